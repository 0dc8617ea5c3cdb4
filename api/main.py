"""The ASGI entry point: `uvicorn api.main:app` (what `referral-service serve` runs)."""

from api.app import create_app

app = create_app()
