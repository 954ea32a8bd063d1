from django.urls import path

from . import ledger, views, workflows

urlpatterns = [
    path("policies/", views.PolicyList.as_view(), name="policy-list"),
    path("releases/", views.ReleaseListCreate.as_view(), name="release-list"),
    path("releases/<int:pk>/", views.ReleaseDetail.as_view(), name="release-detail"),
    path("releases/<int:pk>/evaluate/", views.ReleaseStartEvaluation.as_view(), name="release-evaluate"),
    path("releases/<int:pk>/decisions/", views.ReleaseDecide.as_view(), name="release-decide"),
    path("policies/publish/", workflows.PolicyPublish.as_view(), name="policy-publish"),
    path("taxonomies/", workflows.TaxonomyList.as_view(), name="taxonomy-list"),
    path("mitigations/", workflows.MitigationList.as_view(), name="mitigation-list"),
    path("releases/<int:pk>/rollout/", workflows.ReleaseRollout.as_view(), name="release-rollout"),
    path(
        "releases/<int:pk>/rollout/advance/", workflows.ReleaseRolloutAdvance.as_view(), name="release-rollout-advance"
    ),
    path("releases/<int:pk>/incidents/", workflows.ReleaseIncident.as_view(), name="release-incident"),
    path("releases/<int:pk>/revalidation/", workflows.ReleaseRevalidation.as_view(), name="release-revalidation"),
    path("experiments/<int:pk>/seed-spread/", workflows.ExperimentSeedSpread.as_view(), name="experiment-seed-spread"),
    path("escalations/", workflows.EscalationList.as_view(), name="escalation-list"),
    path("escalations/<int:pk>/acknowledge/", workflows.EscalationAcknowledge.as_view(), name="escalation-ack"),
    path("escalations/<int:pk>/resolve/", workflows.EscalationResolve.as_view(), name="escalation-resolve"),
    path("reviews/", workflows.ReviewQueue.as_view(), name="review-queue"),
    path("reviews/<int:pk>/", workflows.ReviewSubmit.as_view(), name="review-submit"),
    path("ledger/", ledger.LedgerEventList.as_view(), name="ledger-list"),
    path("ledger/verify/", ledger.LedgerVerify.as_view(), name="ledger-verify"),
]
