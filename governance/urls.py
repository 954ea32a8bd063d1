from django.urls import path

from . import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("releases/<int:pk>/", views.release_detail, name="release"),
    path("releases/<int:pk>/decide/<str:kind>/", views.release_decide_confirm, name="release-decide"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
]
