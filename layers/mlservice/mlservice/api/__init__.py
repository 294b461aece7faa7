"""The REST surface: Powertools routers grouped by the concept they serve, and the glue that makes one
Lambda handler out of some of them. Route modules import their heavy dependencies inside the route, so a
function only pays for the routes it serves."""
