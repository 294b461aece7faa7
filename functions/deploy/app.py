"""DeployFunction: the registry routes (list, describe, delete, deploy, rollback, undeploy)."""

from mlservice.api import registry_routes
from mlservice.api.resolver import make_resolver
from mlservice.observability import api_handler

app = make_resolver(registry_routes.router)
handler = api_handler(app.resolve)
