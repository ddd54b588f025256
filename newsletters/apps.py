from django.apps import AppConfig


class NewslettersConfig(AppConfig):
    name = "newsletters"
    verbose_name = "Newsletters"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the receivers
