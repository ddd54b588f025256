"""Secrets from AWS Secrets Manager, merged into the environment before the settings read it.

One secret holds a JSON object of environment variables (``{"SECRET_KEY": "...", "POLYGON_API_KEY": "..."}``), so
the task definition carries only the secret's id and the IAM role decides who may read it. Variables already in
the environment win: an operator can override one value for one task without editing the secret.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping

from django.core.exceptions import ImproperlyConfigured


def secrets_into_environ(
    secret_id: str,
    *,
    region: str,
    environ: MutableMapping[str, str] | None = None,
    client=None,
) -> list[str]:
    """Merge the secret's keys into ``environ`` (``os.environ`` by default); return the names it added."""
    environ = os.environ if environ is None else environ
    if client is None:
        import boto3

        client = boto3.client("secretsmanager", region_name=region)
    try:
        answer = client.get_secret_value(SecretId=secret_id)
    except Exception as exc:  # botocore raises ClientError, NoCredentialsError, EndpointConnectionError, ...
        code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
        raise ImproperlyConfigured(f"cannot read the secret {secret_id!r} from AWS Secrets Manager: {code}") from None
    try:
        values = json.loads(answer.get("SecretString") or "")
    except ValueError:
        values = None
    if not isinstance(values, dict):
        raise ImproperlyConfigured(
            f'the secret {secret_id!r} must be a JSON object of environment variables, like {{"SECRET_KEY": "..."}}'
        )
    added = []
    for name, value in values.items():
        if isinstance(value, dict | list):
            raise ImproperlyConfigured(f"the secret {secret_id!r} has a nested value for {name!r}; use strings")
        if name in environ or value is None:
            continue
        environ[name] = value if isinstance(value, str) else json.dumps(value)
        added.append(name)
    return added
