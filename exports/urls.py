from django.urls import path

from . import views

urlpatterns = [
    path("releases/<int:pk>/exports/", views.export_create, name="export-create"),
    path("releases/<int:pk>/grants/", views.grant_create, name="grant-create"),
]
