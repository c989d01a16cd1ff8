"""Authentication and authorization for the services: who is asking
(``Principal``, from a JWT or an API key) and what it may do (``Policy``).
See docs/security.md."""

from eventfold.security.apikeys import (
    APIKey,
    APIKeyAuthenticator,
    APIKeyStore,
    MemoryAPIKeyStore,
    SQLAPIKeyStore,
    create_key,
    open_api_keys,
    register_api_key_store,
)
from eventfold.security.authn import Authenticator, Security
from eventfold.security.jwt import JWTAuthenticator
from eventfold.security.policy import ADMIN_PERMISSIONS, Policy
from eventfold.security.principal import Principal, check_tenant

__all__ = [
    "ADMIN_PERMISSIONS",
    "APIKey",
    "APIKeyAuthenticator",
    "APIKeyStore",
    "Authenticator",
    "JWTAuthenticator",
    "MemoryAPIKeyStore",
    "Policy",
    "Principal",
    "SQLAPIKeyStore",
    "Security",
    "check_tenant",
    "create_key",
    "open_api_keys",
    "register_api_key_store",
]
