from django.urls import path

from . import views

urlpatterns = [
    path("releases/<int:pk>/exports/", views.ReleaseExports.as_view(), name="release-exports"),
    path("releases/<int:pk>/grants/", views.ReleaseGrant.as_view(), name="release-grant"),
    path("grants/<int:pk>/revoke/", views.GrantRevoke.as_view(), name="grant-revoke"),
    path("exports/verify/", views.ExportVerify.as_view(), name="export-verify"),
    path("exports/<int:pk>/", views.ExportDetail.as_view(), name="export-detail"),
    path("exports/<int:pk>/<str:part>/", views.ExportDownload.as_view(), name="export-download"),
]
