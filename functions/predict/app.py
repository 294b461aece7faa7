"""PredictFunction: online predictions (REST and Open Inference Protocol v2) and the API's documentation.
PredictFallbackFunction runs the same handler on the scikit-learn layer, and also serves explanations."""

from mlservice.api import docs_routes, explain_routes, predict_routes, v2_routes
from mlservice.api.resolver import make_resolver
from mlservice.observability import api_handler
from mlservice.serving import gc_policy

app = make_resolver(predict_routes.router, v2_routes.router, docs_routes.router, explain_routes.router)
handler = api_handler(app.resolve)
gc_policy.after_startup()  # last: everything imported above is frozen (mlservice.serving.gc_policy)
