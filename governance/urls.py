from django.urls import path

from . import views, web_evaluations, web_inventory, web_progress, web_runs, web_tracking

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("releases/<int:pk>/", views.release_detail, name="release"),
    path("releases/<int:pk>/progress/", web_progress.release_progress_fragment, name="release-progress"),
    path("running/", web_progress.running_fragment, name="running"),
    path("releases/<int:pk>/decide/<str:kind>/", views.release_decide_confirm, name="release-decide"),
    path("releases/<int:pk>/rollout/", views.release_rollout, name="release-rollout"),
    path("escalations/<int:pk>/resolve/", views.escalation_resolve_view, name="escalation-resolve"),
    path("reviews/", views.review_queue, name="reviews"),
    path("reviews/<int:pk>/", views.review_detail, name="review"),
    path("taxonomy/", views.taxonomy_page, name="taxonomy"),
    path("policies/", views.policies_page, name="policies"),
    path("experiments/", web_inventory.experiment_list, name="experiments"),
    path("experiments/<int:pk>/", web_inventory.experiment_detail, name="experiment"),
    path("artifacts/", web_inventory.artifact_list, name="artifacts"),
    path("artifacts/<int:pk>/", web_inventory.artifact_detail, name="artifact"),
    path("runs/", web_inventory.run_list, name="runs"),
    path("runs/<int:pk>/", web_runs.run_detail, name="run"),
    path("runs/<int:pk>/release/", web_runs.run_release, name="run-release"),
    path("runs/<int:pk>/provenance.json", web_runs.run_provenance, name="run-provenance"),
    path("evaluations/", web_evaluations.evaluation_list, name="evaluations"),
    path("evaluations/<int:pk>/", web_evaluations.evaluation_detail, name="evaluation"),
    path("comparisons/<int:pk>/", web_evaluations.comparison_detail, name="comparison"),
    path("external-runs/", web_tracking.external_run_list, name="external-runs"),
    path("external-runs/<int:pk>/", web_tracking.external_run_detail, name="external-run"),
    path("external-runs/<int:pk>/release/", web_tracking.external_run_release, name="external-run-release"),
]
