"""IoTCast settings: every value comes from an environment variable with a local default.

Bad values fail loudly at start-up (see iotcast.envconfig).
"""

from pathlib import Path

from iotcast.envconfig import database_from_url, env_bool, env_choice, env_int, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(env_str("IOTCAST_STATE_DIR", str(BASE_DIR / "var"))).resolve()
STATE_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "iotcast-local-development-key-change-me-in-production")
DEBUG = env_bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = env_str("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "devices",
    "forecasts",
    "deployments",
    "dashboard",
    "alarms",
    "iotcast",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "iotcast.urls"
WSGI_APPLICATION = "iotcast.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {"default": database_from_url(env_str("DATABASE_URL", f"sqlite:///{STATE_DIR / 'iotcast.sqlite3'}"))}
# Keep a thread's connection between requests: opening one per request cost the REST proxy about 1 ms of
# CPU per forecast (bench/serve.py). 0 closes it after every request, as Django does by default.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("IOTCAST_DB_CONN_MAX_AGE", 60, minimum=0, maximum=3600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = STATE_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request while it is missing
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "IoTCast API",
    "DESCRIPTION": "Devices, readings and DeepAR forecasts (SageMaker Runtime compatible invocations).",
    "VERSION": "1.0.0",
    "ENUM_NAME_OVERRIDES": {
        "DeviceStatusEnum": "devices.models.Device.Status",
        "CertificateStatusEnum": "devices.models.DeviceCertificate.Status",
        "EndpointStatusEnum": "deployments.models.Endpoint.Status",
        "PipelineRunStatusEnum": "forecasts.models.PipelineRun.Status",
        "TrainingJobStatusEnum": "forecasts.models.TrainingJob.Status",
        "EndpointOperationStatusEnum": "deployments.models.EndpointOperation.Status",
    },
}

# --- Celery on Redis -------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("IOTCAST_TASK_TIME_LIMIT_S", 1800, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 5
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
PIPELINE_INTERVAL_S = env_int("IOTCAST_PIPELINE_INTERVAL_S", 120, minimum=5)
TRAIN_INTERVAL_S = env_int("IOTCAST_TRAIN_INTERVAL_S", 3600, minimum=30)
ALARM_INTERVAL_S = env_int("IOTCAST_ALARM_INTERVAL_S", 60, minimum=5)
# Served forecasts are kept this long for accuracy scoring and the past-forecasts page, then pruned daily.
FORECAST_RETENTION_DAYS = env_int("IOTCAST_FORECAST_RETENTION_DAYS", 90, minimum=8)
CELERY_BEAT_SCHEDULE = {
    "pipeline-cycle": {"task": "forecasts.tasks.pipeline_cycle", "schedule": float(PIPELINE_INTERVAL_S)},
    "alarms-evaluate": {"task": "alarms.tasks.evaluate_alarms", "schedule": float(ALARM_INTERVAL_S)},
    "forecast-records-prune": {"task": "deployments.tasks.prune_forecast_records", "schedule": 86400.0},
}

# --- Data plane ------------------------------------------------------------
BROKER_HOST = env_str("IOTCAST_BROKER_HOST", "127.0.0.1")
BROKER_PORT = env_int("IOTCAST_BROKER_PORT", 8883, minimum=1, maximum=65535)
TELEMETRY_TOPIC_FILTER = "dt/iotcast/+/telemetry"
INGEST_BUFFER_SIZE_MB = env_int("IOTCAST_BUFFER_SIZE_MB", 5, minimum=1, maximum=128)
# Firehose's defaults (SizeInMBs 5, IntervalInSeconds 300); the demo's topic rule uses a short interval.
INGEST_BUFFER_INTERVAL_S = env_int("IOTCAST_BUFFER_INTERVAL_S", 300, minimum=0, maximum=900)
ENDPOINT_SERVER_URL = env_str("IOTCAST_ENDPOINT_SERVER_URL", "http://127.0.0.1:8080")
LAKE_URL = env_str("IOTCAST_LAKE_URL", f"file://{STATE_DIR / 'lake'}")
AWS_REGION = env_str("AWS_REGION", env_str("AWS_DEFAULT_REGION", "us-east-1"))
DEFAULT_ENDPOINT_NAME = env_str("IOTCAST_ENDPOINT_NAME", "iotcast-deepar")
# Invocations per API token through the REST proxy (DRF rate: N/s, N/min, N/hour).
ENDPOINT_INVOKE_THROTTLE_RATE = env_str("IOTCAST_API_THROTTLE_RATE", "6000/min")
# Crawler policies (Glue's SchemaChangePolicy / RecrawlPolicy), defaults of runs that name none;
# the scheduled cycle reads only new partitions, so that it costs only the new data.
CRAWLER_UPDATE_BEHAVIOR = env_choice(
    "IOTCAST_CRAWLER_UPDATE_BEHAVIOR", "UPDATE_IN_DATABASE", ("UPDATE_IN_DATABASE", "LOG")
)
CRAWLER_DELETE_BEHAVIOR = env_choice(
    "IOTCAST_CRAWLER_DELETE_BEHAVIOR", "DEPRECATE_IN_DATABASE", ("LOG", "DELETE_FROM_DATABASE", "DEPRECATE_IN_DATABASE")
)
CRAWLER_RECRAWL_POLICY = env_choice(
    "IOTCAST_CRAWLER_RECRAWL_POLICY", "CRAWL_EVERYTHING", ("CRAWL_EVERYTHING", "CRAWL_NEW_FOLDERS_ONLY")
)
CRAWLER_SCHEDULED_RECRAWL_POLICY = env_choice(
    "IOTCAST_CRAWLER_SCHEDULED_RECRAWL_POLICY", "CRAWL_NEW_FOLDERS_ONLY", ("CRAWL_EVERYTHING", "CRAWL_NEW_FOLDERS_ONLY")
)
# The admin SQL console (/lake/sql/): rows shown at most, seconds before a query is stopped.
LAKE_SQL_MAX_ROWS = env_int("IOTCAST_LAKE_SQL_MAX_ROWS", 1000, minimum=1, maximum=100_000)
LAKE_SQL_TIMEOUT_S = env_int("IOTCAST_LAKE_SQL_TIMEOUT_S", 30, minimum=1, maximum=3600)

# --- Cloud backends, shaped like Django's STORAGES --------------------------
CLOUD_BACKEND = env_choice("IOTCAST_CLOUD_BACKEND", "local", ("local", "aws"))
_LAKE_CLASS = "cloud.lake.S3Lake" if LAKE_URL.startswith("s3://") else "cloud.lake.FolderLake"
_LAKE = {"BACKEND": _LAKE_CLASS, "OPTIONS": {"url": LAKE_URL}}
_LOCAL_BACKENDS = {
    "lake": _LAKE,
    "identity": {
        "BACKEND": "cloud.local.identity.LocalCertificateAuthority",
        "OPTIONS": {"ca_dir": str(STATE_DIR / "ca"), "broker_host": BROKER_HOST, "broker_port": BROKER_PORT},
    },
    "catalog": {"BACKEND": "cloud.local.catalog.DuckDBCrawler", "OPTIONS": {}},
    "etl": {"BACKEND": "cloud.local.etl.DuckDBEtlJob", "OPTIONS": {}},
    "query": {"BACKEND": "cloud.local.query.DuckDBQuery", "OPTIONS": {}},
    "training": {"BACKEND": "cloud.local.training.GluonTSDeepAR", "OPTIONS": {"work_dir": str(STATE_DIR / "training")}},
    "hosting": {
        "BACKEND": "cloud.local.hosting.LocalEndpointHosting",
        "OPTIONS": {"endpoint_url": ENDPOINT_SERVER_URL, "region": AWS_REGION},
    },
}
# Glue crawler and job role, Glue database (Data Catalog) shared by the crawler and Athena.
_GLUE_ROLE_ARN = env_str("IOTCAST_GLUE_ROLE_ARN", "")
_GLUE_DATABASE = env_str("IOTCAST_GLUE_DATABASE", "iotcast")
# The SageMaker execution role for training jobs and hosted models.
_SAGEMAKER_ROLE_ARN = env_str("IOTCAST_SAGEMAKER_ROLE_ARN", "")
# The role the IoT rule's Firehose action and the Firehose stream assume (topic rules deploy with it).
_FIREHOSE_ROLE_ARN = env_str("IOTCAST_FIREHOSE_ROLE_ARN", "")
_AWS_BACKENDS = {
    "lake": _LAKE,
    "identity": {
        "BACKEND": "cloud.aws.identity.IoTCoreIdentity",
        "OPTIONS": {"region": AWS_REGION, "delivery_role_arn": _FIREHOSE_ROLE_ARN},
    },
    "catalog": {
        "BACKEND": "cloud.aws.catalog.GlueCrawler",
        "OPTIONS": {
            "region": AWS_REGION,
            "database": _GLUE_DATABASE,
            "crawler_name": "iotcast-raw",
            "role_arn": _GLUE_ROLE_ARN,
        },
    },
    "etl": {
        "BACKEND": "cloud.aws.etl.GlueEtlJob",
        "OPTIONS": {"region": AWS_REGION, "job_name": "iotcast-telemetry-etl", "role_arn": _GLUE_ROLE_ARN},
    },
    "query": {
        "BACKEND": "cloud.aws.query.AthenaQuery",
        "OPTIONS": {
            "region": AWS_REGION,
            "database": _GLUE_DATABASE,
            "output_prefix": "athena-results/",
            "workgroup": env_str("IOTCAST_ATHENA_WORKGROUP", "primary"),
        },
    },
    "training": {
        "BACKEND": "cloud.aws.training.SageMakerDeepAR",
        "OPTIONS": {"region": AWS_REGION, "role_arn": _SAGEMAKER_ROLE_ARN},
    },
    "hosting": {
        "BACKEND": "cloud.aws.hosting.SageMakerHosting",
        "OPTIONS": {"region": AWS_REGION, "role_arn": _SAGEMAKER_ROLE_ARN},
    },
}
CLOUD_BACKENDS = _AWS_BACKENDS if CLOUD_BACKEND == "aws" else _LOCAL_BACKENDS

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("IOTCAST_LOG_LEVEL", "INFO")},
}
