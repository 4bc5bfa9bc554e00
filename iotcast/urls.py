"""URL routes: dashboard pages, the REST API under /api/v1/, the schema, admin and /healthz."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from iotcast.health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include("devices.urls")),
    path("api/v1/", include("forecasts.urls")),
    path("api/v1/", include("deployments.urls")),
    path("api/v1/", include("forecasts.training_api_urls")),
    # Operator pages that belong to one pipeline stage live with that stage's app.
    path("fleet/", include("devices.web_urls")),
    path("lake/", include("forecasts.lake_web_urls")),
    path("training/", include("forecasts.training_web_urls")),
    path("serving/", include("deployments.web_urls")),
    path("", include("dashboard.urls")),
]
