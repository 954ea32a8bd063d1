from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token

api = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("", include("compression.api.urls")),
    path("", include("evaluations.api.urls")),
    path("", include("tracking.api.urls")),
    path("", include("governance.api.urls")),
    path("", include("exports.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    # MLflow's tracking protocol (issue 13 item 3): MLFLOW_TRACKING_URI=http(s)://<host>/mlflow.
    path("mlflow/", include("tracking.mlflow.urls")),
    path("api/", include(api)),
    path("login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include(("governance.urls", "web"))),
    path("", include(("exports.urls", "exports"))),
]

# templates/400.html, 403.html and 404.html are rendered by Django's default handlers; the 500 page by ours,
# without a request context and with a plain fallback (accounts/error_pages.py).
handler500 = "accounts.error_pages.server_error"
