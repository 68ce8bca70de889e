"""A generic OData v4 client nobody here wrote, python-odata (``import odata``, in the lock),
driving the emulator with its ordinary calls: queries with filters, ordering, ``$top``/``$skip``,
``/$count``, server-driven paging through ``@odata.nextLink``, create, update with the entity's
ETag in ``If-Match``, a stale ETag, delete.

Why the entities are declared rather than reflected: python-odata reflects each ``EnumType`` of
``$metadata`` into a Python ``enum.Enum`` named by its members, and Python refuses ``_x0020_`` as a
member name (``_sunder_`` names are reserved). Business Central's real ``$metadata`` names the
blank member of 20-odd enums exactly so (``customerBlocked``: ``_x0020_``, Ship, Invoice, All;
``shared/specs/bc-api-v2.0-metadata.xml``), so ``ODataService(url, reflect_entities=True)`` fails
against the real service as against the emulator (the first test pins that down). The emulator
keeps BC's names; the client is used the other way its documentation gives, declarative entity
classes (``odata.entity``: "The data model can be created manually").

The service URL is the service root: python-odata addresses ``{root}/customers``, which BC serves
for the company given as ``?company=``, in a ``Company`` header, or the tenant's only company
(MS Learn dev-itpro/webservices/api-endpoint-structure).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests
from odata import ODataService
from odata.entity import declarative_base
from odata.exceptions import ODataError
from odata.flags import ODataServerFlags
from odata.property import DatetimeProperty, DecimalProperty, StringProperty, UUIDProperty

Base = declarative_base()


class Customer(Base):
    __odata_type__ = "Microsoft.NAV.customer"
    __odata_collection__ = "customers"

    id = UUIDProperty("id", primary_key=True)
    number = StringProperty("number", is_computed_value=True)   # from BC's number series
    displayName = StringProperty("displayName")
    email = StringProperty("email")
    city = StringProperty("city")
    type = StringProperty("type")
    blocked = StringProperty("blocked")
    lastModifiedDateTime = DatetimeProperty("lastModifiedDateTime", is_computed_value=True)


class Item(Base):
    __odata_type__ = "Microsoft.NAV.item"
    __odata_collection__ = "items"

    id = UUIDProperty("id", primary_key=True)
    number = StringProperty("number")
    displayName = StringProperty("displayName")
    unitPrice = DecimalProperty("unitPrice")


@pytest.fixture(scope="module")
def session(api):
    http = requests.Session()
    http.headers.update({"Authorization": f"Bearer {api.token}",
                         "Prefer": "odata.maxpagesize=40"})
    return http


@pytest.fixture(scope="module")
def service(api, session):
    return ODataService(api.service + "/", base=Base, reflect_entities=False, session=session,
                        quiet_progress=True,
                        server_flags=ODataServerFlags(skip_null_properties=True))


def test_reflection_fails_on_bcs_own_enum_names(api, session):
    """The reason for declared entities (module docstring): reflecting BC's ``$metadata`` makes
    an ``enum.Enum`` with a member ``_x0020_``, which Python refuses."""
    with pytest.raises(ValueError, match="_x0020_"):
        ODataService(api.service + "/", reflect_entities=True, session=session,
                     quiet_progress=True)


def test_filter_order_and_top(service):
    query = service.query(Customer).filter(Customer.type == "Company").order_by(
        Customer.number.asc()).limit(3)
    customers = query.all()
    numbers = [c.number for c in customers]
    assert len(customers) == 3 and numbers == sorted(numbers)
    assert all(c.type == "Company" and c.blocked in ("_x0020_", " ") for c in customers)


def test_string_functions(service):
    starting = service.query(Customer).filter(Customer.displayName.startswith("S")).all()
    assert starting and all(c.displayName.startswith("S") for c in starting)
    containing = service.query(Customer).filter(Customer.displayName.contains("an")).all()
    assert containing and all("an" in c.displayName for c in containing)


def test_count_skip_and_paging(api, service):
    total = service.query(Customer).count()                       # GET customers/$count
    assert total == len(api.json("GET", "customers")[1]["value"])
    everything = service.query(Customer).order_by(Customer.number.asc()).all()   # nextLinks
    assert len(everything) == total == len({c.id for c in everything})
    page = service.query(Customer).order_by(Customer.number.asc()).offset(5).limit(2).all()
    assert [c.id for c in page] == [c.id for c in everything[5:7]]


def test_get_by_key_and_decimals(service):
    first = service.query(Item).order_by(Item.number.asc()).first()
    again = service.query(Item).get(first.id)
    assert again.number == first.number and isinstance(again.unitPrice, Decimal)


def test_create_update_with_etag_conflict_and_delete(service):
    customer = Customer()
    customer.displayName, customer.email = "Adatum Corporation", "robert.townes@contoso.com"
    customer.city, customer.type, customer.blocked = "Atlanta", "Company", " "
    service.save(customer)                                              # POST
    assert customer.id and customer.number
    etag = customer.__odata__.data["@odata.etag"]

    customer.city = "Oslo"
    service.default_context.save(customer, extra_headers={"If-Match": etag})   # PATCH
    assert service.query(Customer).get(customer.id).city == "Oslo"
    assert customer.__odata__.data["@odata.etag"] != etag

    customer.city = "Bergen"                        # with the ETag from before the update
    with pytest.raises(ODataError) as stale:
        service.default_context.save(customer, extra_headers={"If-Match": etag})
    assert (stale.value.status_code, stale.value.code) == ("HTTP 409", "Request_EntityChanged")

    service.default_context.connection.execute_delete(
        customer.__odata__.instance_url,
        extra_headers={"If-Match": customer.__odata__.data["@odata.etag"]})
    assert service.query(Customer).filter(Customer.id == customer.id).all() == []
