"""REST adapter: FastAPI app over the core (task API and KServe V2)."""
