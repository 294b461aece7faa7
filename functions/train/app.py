"""TrainFunction: POST /models/{model}/versions. The logic lives in the layer (mlservice)."""

from mlservice.api import training_routes
from mlservice.api.resolver import make_resolver
from mlservice.observability import api_handler

app = make_resolver(training_routes.router)
handler = api_handler(app.resolve)
