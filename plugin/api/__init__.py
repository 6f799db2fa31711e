"""HTTP APIs for machine clients (jobs) and operators (health), and the OpenAPI file describing them."""
