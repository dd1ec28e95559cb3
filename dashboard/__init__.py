"""The SOC dashboard (Plotly Dash): `dashboard.app.create_app(config)` and `dashboard.app.run(config)`."""
