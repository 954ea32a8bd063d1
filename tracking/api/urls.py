from django.urls import path

from . import views

urlpatterns = [
    path("external-runs/", views.ExternalRunListCreate.as_view(), name="external-run-list"),
    path("external-runs/<int:pk>/", views.ExternalRunDetail.as_view(), name="external-run-detail"),
    path("external-runs/<int:pk>/log/", views.ExternalRunLog.as_view(), name="external-run-log"),
    path("external-runs/<int:pk>/finish/", views.ExternalRunFinish.as_view(), name="external-run-finish"),
    path("external-runs/<int:pk>/metrics/", views.ExternalRunMetrics.as_view(), name="external-run-metrics"),
    path(
        "external-runs/<int:pk>/provenance/",
        views.ExternalRunProvenanceAttach.as_view(),
        name="external-run-provenance",
    ),
    path("engineer-keys/", views.EngineerKeyListCreate.as_view(), name="engineer-key-list"),
]
