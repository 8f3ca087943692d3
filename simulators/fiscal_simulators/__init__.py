"""Local simulators of the fiscal providers' public HTTP APIs (test and demo tooling).

Each simulator is a real HTTP server on 127.0.0.1 that follows one provider's
public contract (paths, authentication, JSON shapes, status codes), so a client
cannot tell it from the real service except by its ``base_url``. No Odoo import.
"""
