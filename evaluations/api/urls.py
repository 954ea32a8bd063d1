from django.urls import path

from . import views

urlpatterns = [
    path("suites/", views.SuiteList.as_view(), name="suite-list"),
    path("suites/import/", views.SuiteImport.as_view(), name="suite-import"),
    path("chat-suites/", views.ChatSuiteImport.as_view(), name="chat-suite-import"),
    path("suite-imports/<int:pk>/", views.SuiteImportDetail.as_view(), name="suite-import-detail"),
    path("suite-versions/<int:pk>/perturb/", views.SuiteVersionPerturb.as_view(), name="suite-version-perturb"),
    path("suite-versions/<int:pk>/", views.SuiteVersionDetail.as_view(), name="suite-version-detail"),
    path("suite-versions/<int:pk>/examples/", views.SuiteVersionExamples.as_view(), name="suite-version-examples"),
    path("evaluations/<int:pk>/", views.EvaluationDetail.as_view(), name="evaluation-detail"),
    path("comparisons/<int:pk>/", views.ComparisonDetail.as_view(), name="comparison-detail"),
    path("comparisons/<int:pk>/flips/", views.ComparisonFlips.as_view(), name="comparison-flips"),
]
