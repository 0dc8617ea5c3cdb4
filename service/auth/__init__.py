"""Token verification, signing keys and JWKS, development keys, scopes."""
