"""Saving the origins of written values (docs/decisions/0015-edit-time-provenance.md), end to
end on the custom systems: what a write leaves in the link store, and that a crash between a
write and its save is safe (the record's own time counts, as before)."""

from __future__ import annotations

import datetime

from connectors.sqlite_store import SqliteLinkStore
from connectors.stores import open_link_store
from core.provenance import Version
from tests.conftest import group_by


def _store_url(harness) -> str:
    return "sqlite:///" + str(harness.sandbox.state_dir / "links.db")


def _edit_erp_phone(harness, phone: str) -> tuple[dict, dict]:
    """An ERP customer's phone edited; (the ERP row, the webshop customer it is linked to)."""
    erp = harness.list_all("customerp", "Customers")[3]
    shop = group_by(harness.shop_all("customers"), "email", True)[erp["Email"].lower()][0]
    return harness.put_erp("Customers", erp["CustomerNo"], {"Phone": phone}), shop


def test_a_write_leaves_its_values_origins_and_the_version_it_made(synced_harness):
    erp, shop = _edit_erp_phone(synced_harness, "+47 411 11 111")
    assert synced_harness.run()[0] == 0
    written = synced_harness.get("customwebshop", "customers", shop["id"]).json()
    with open_link_store(_store_url(synced_harness)) as store:
        entry = store.lookup_origins("customwebshop", "customers", [shop["id"]])[shop["id"]]
    edited = datetime.datetime.fromisoformat(erp["ModifiedAt"].replace("Z", "+00:00"))
    assert entry.origins["phone"].system == "customerp"
    assert entry.origins["phone"].at == edited                 # the person's edit, in the ERP
    assert entry.version.modified == datetime.datetime.fromisoformat(
        written["updated_at"].replace("Z", "+00:00"))          # the version talksync left
    # the first sync created the webshop customer from the ERP's: the fields this write did
    # not carry keep the origins that create gave them
    assert entry.origins["email"].system == "customerp"
    assert entry.origins["email"].at < edited


def test_a_crash_between_the_write_and_the_save_of_its_origins_is_safe(synced_harness,
                                                                       monkeypatch, caplog):
    def crash(self, writes):
        raise OSError("disk gone")
    monkeypatch.setattr(SqliteLinkStore, "save_origins", crash)
    _, shop = _edit_erp_phone(synced_harness, "+47 422 22 222")
    status, report = synced_harness.run()
    assert status == 0                          # the writes stand, the run syncs
    assert synced_harness.get("customwebshop", "customers",
                              shop["id"]).json()["phone"] == "+47 422 22 222"
    assert "origins of 1 written values were not saved" in caplog.text
    monkeypatch.undo()
    written = synced_harness.get("customwebshop", "customers", shop["id"]).json()
    now_at = Version(modified=datetime.datetime.fromisoformat(
        written["updated_at"].replace("Z", "+00:00")))
    with open_link_store(_store_url(synced_harness)) as store:
        # the entry of the first sync's create names the version before this write: no read
        # of the record as it is now takes its origins
        entry = store.lookup_origins("customwebshop", "customers", [shop["id"]])[shop["id"]]
        assert not entry.valid_for(now_at)
    # with no entry, the webshop record counts with its own modified time: as before
    assert synced_harness.run()[1]["pairs"]["customer"]["updated_source"] == 0
