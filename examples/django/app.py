"""The smallest Django project, in one file, for corral's Django example.

gunicorn serves `app:application`. The settings are inline; a real project keeps its own
settings module and points gunicorn at its wsgi.py the same way.
"""
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse, JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret"),
    MIDDLEWARE=[],
    USE_X_FORWARDED_HOST=True,
)


def index(request):
    return JsonResponse({
        "hello": "django",
        "pid": os.getpid(),
        "worker": os.environ.get("CORRAL_WORKER"),
        "client": request.META.get("HTTP_X_FORWARDED_FOR"),
    })


def health(request):
    return HttpResponse("ok\n")


urlpatterns = [path("", index), path("health", health)]
application = get_wsgi_application()
