from django.urls import path

from . import views

urlpatterns = [
    path("artifacts/", views.ArtifactListCreate.as_view(), name="artifact-list"),
    path("artifacts/<int:pk>/", views.ArtifactDetail.as_view(), name="artifact-detail"),
    path("experiments/", views.ExperimentListCreate.as_view(), name="experiment-list"),
    path("experiments/<int:pk>/", views.ExperimentDetail.as_view(), name="experiment-detail"),
    path("experiments/<int:pk>/runs/", views.ExperimentRunRequest.as_view(), name="experiment-run-request"),
    path("runs/", views.RunList.as_view(), name="run-list"),
    path("runs/<int:pk>/", views.RunDetail.as_view(), name="run-detail"),
    path("runs/<int:pk>/cancel/", views.RunCancel.as_view(), name="run-cancel"),
]
