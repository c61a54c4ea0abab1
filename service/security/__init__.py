"""Who may talk to the server: TLS on both ports (tls.py) and the API keys (keys.py), both read from mounted
files and re-read when they change, so cert-manager renewals and key rotation need no restart."""
