"""Notifications: signed webhooks (Standard Webhooks v1) from a transactional outbox."""
