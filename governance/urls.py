from django.urls import path

from . import views, web_runs, web_tracking

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("releases/<int:pk>/", views.release_detail, name="release"),
    path("releases/<int:pk>/decide/<str:kind>/", views.release_decide_confirm, name="release-decide"),
    path("releases/<int:pk>/rollout/", views.release_rollout, name="release-rollout"),
    path("escalations/<int:pk>/resolve/", views.escalation_resolve_view, name="escalation-resolve"),
    path("reviews/", views.review_queue, name="reviews"),
    path("reviews/<int:pk>/", views.review_detail, name="review"),
    path("taxonomy/", views.taxonomy_page, name="taxonomy"),
    path("policies/", views.policies_page, name="policies"),
    path("runs/<int:pk>/", web_runs.run_detail, name="run"),
    path("runs/<int:pk>/release/", web_runs.run_release, name="run-release"),
    path("runs/<int:pk>/provenance.json", web_runs.run_provenance, name="run-provenance"),
    path("external-runs/", web_tracking.external_run_list, name="external-runs"),
    path("external-runs/<int:pk>/", web_tracking.external_run_detail, name="external-run"),
    path("external-runs/<int:pk>/release/", web_tracking.external_run_release, name="external-run-release"),
]
