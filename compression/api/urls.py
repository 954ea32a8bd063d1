from django.urls import path

from . import methods, signatures, uploads, views

urlpatterns = [
    path("artifacts/", views.ArtifactListCreate.as_view(), name="artifact-list"),
    path("artifacts/<int:pk>/", views.ArtifactDetail.as_view(), name="artifact-detail"),
    path(
        "artifacts/<int:pk>/model-signature/",
        signatures.ArtifactModelSignature.as_view(),
        name="artifact-model-signature",
    ),
    path("artifacts/model-signing-key/", signatures.ModelSigningKey.as_view(), name="artifact-model-signing-key"),
    path("experiments/", views.ExperimentListCreate.as_view(), name="experiment-list"),
    path("experiments/<int:pk>/", views.ExperimentDetail.as_view(), name="experiment-detail"),
    path("experiments/<int:pk>/runs/", views.ExperimentRunRequest.as_view(), name="experiment-run-request"),
    path("methods/", methods.MethodList.as_view(), name="method-list"),
    path("runs/", views.RunList.as_view(), name="run-list"),
    path("runs/<int:pk>/", views.RunDetail.as_view(), name="run-detail"),
    path("runs/<int:pk>/cancel/", views.RunCancel.as_view(), name="run-cancel"),
    path("uploads/", uploads.UploadListCreate.as_view(), name="upload-list"),
    path("uploads/<int:pk>/", uploads.UploadDetail.as_view(), name="upload-detail"),
    path("uploads/<int:pk>/chunks/", uploads.UploadChunk.as_view(), name="upload-chunk"),
    path("uploads/<int:pk>/finish/", uploads.UploadFinish.as_view(), name="upload-finish"),
    path("uploads/<int:pk>/abort/", uploads.UploadAbort.as_view(), name="upload-abort"),
]
