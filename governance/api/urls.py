from django.urls import path

from . import ledger, views

urlpatterns = [
    path("policies/", views.PolicyList.as_view(), name="policy-list"),
    path("releases/", views.ReleaseListCreate.as_view(), name="release-list"),
    path("releases/<int:pk>/", views.ReleaseDetail.as_view(), name="release-detail"),
    path("releases/<int:pk>/evaluate/", views.ReleaseStartEvaluation.as_view(), name="release-evaluate"),
    path("releases/<int:pk>/decisions/", views.ReleaseDecide.as_view(), name="release-decide"),
    path("ledger/", ledger.LedgerEventList.as_view(), name="ledger-list"),
    path("ledger/verify/", ledger.LedgerVerify.as_view(), name="ledger-verify"),
]
