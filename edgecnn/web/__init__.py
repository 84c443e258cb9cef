"""The phone web demo: a static site from export folders, its server, and its self-test in Chromium."""
