"""MLflow's REST protocol under /mlflow (MLFLOW_TRACKING_URI=http(s)://<host>/mlflow). Routes SafeShrink does
not serve answer ENDPOINT_NOT_FOUND in MLflow's error format. Not part of SafeShrink's OpenAPI schema: this is
MLflow's protocol, not SafeShrink's API (its views are plain Django views, which drf-spectacular leaves out)."""

from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from . import artifacts, registry, views
from .errors import endpoint_not_found

API = "api/2.0/mlflow/"
ARTIFACTS = "api/2.0/mlflow-artifacts/artifacts"


@csrf_exempt
def not_found(request, rest=""):
    return endpoint_not_found(request.method or "", request.path)


urlpatterns = [
    path(f"{API}experiments/get-by-name", views.experiment_get_by_name),
    path(f"{API}experiments/get", views.experiment_get),
    path(f"{API}experiments/create", views.experiment_create),
    path(f"{API}experiments/search", views.experiment_search),
    path(f"{API}runs/create", views.run_create),
    path(f"{API}runs/update", views.run_update),
    path(f"{API}runs/get", views.run_get),
    path(f"{API}runs/search", views.run_search),
    path(f"{API}runs/log-batch", views.log_batch),
    path(f"{API}runs/log-metric", views.log_metric),
    path(f"{API}runs/log-parameter", views.log_param),
    path(f"{API}runs/set-tag", views.set_tag),
    path(f"{API}metrics/get-history", views.metric_get_history),
    path(f"{API}artifacts/list", artifacts.run_artifacts_list),
    path(f"{API}logged-models/search", registry.logged_models_search),
    path(f"{API}logged-models/<str:model_id>", registry.logged_model_get),
    path(f"{API}logged-models/<str:model_id>/tags", registry.logged_model_set_tags),
    path(f"{API}registered-models/create", registry.registered_model_create_view),
    path(f"{API}registered-models/get", registry.registered_model_get_view),
    path(f"{API}model-versions/create", registry.model_version_create_view),
    path(f"{API}model-versions/get", registry.model_version_get_view),
    path(ARTIFACTS, artifacts.artifact_list),
    path(f"{ARTIFACTS}/<path:path>", artifacts.artifact_file),
    re_path(r"^(?P<rest>.*)$", not_found),
]
