import pytest

from eventfold.testing import StoreConformance


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store_url(self, pg_url: str) -> str:
        return pg_url
