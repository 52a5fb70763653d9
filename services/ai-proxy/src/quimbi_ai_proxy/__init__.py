"""The ai-proxy service."""
