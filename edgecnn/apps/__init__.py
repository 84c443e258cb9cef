"""What the demo apps (Android, the web page) share: variants to bundle and Python's golden results."""
