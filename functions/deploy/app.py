"""DeployFunction: the registry routes (list, describe, delete, deploy, rollback, undeploy), the dataset routes
(create, upload, profile, delete), the front page and the model cards."""

from mlservice.api import dataset_routes, page_routes, registry_routes
from mlservice.api.resolver import make_resolver
from mlservice.observability import api_handler

app = make_resolver(registry_routes.router, dataset_routes.router, page_routes.router)
handler = api_handler(app.resolve)
