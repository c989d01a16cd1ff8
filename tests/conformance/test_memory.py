import pytest

from eventfold.testing import StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store_url(self) -> str:
        return "memory://"
