"""Prints the CloudEvents of one order and its return, one per line, timed around now, for
`aftersales send`:

    .venv/bin/python docs/examples/my-return.py | .venv/bin/aftersales send

An order of one sweater is paid (3 days ago), shipped and signed for (yesterday); the buyer
returns it because it does not fit, ships it back and the warehouse signs for it now: the
returns service approves the return and asks the refund ledger, which issues the refund
(`aftersales refunds ORDER_ID` shows it). Change anything and send again: an event the
services would refuse is refused by `send` with the same reason, and nothing is sent.
"""

import json
import sys
import uuid
from datetime import UTC, datetime, timedelta

run = uuid.uuid4().hex[:6]
order, customer, ret = f"O-mine-{run}", f"C-mine-{run}", f"R-mine-{run}"
now = datetime.now(UTC).replace(microsecond=0)
paid, shipped, signed = now - timedelta(days=3), now - timedelta(days=2), now - timedelta(days=1)


def event(type_, at, data):
    return {
        "specversion": "1.0",
        "id": f"mine-{uuid.uuid4()}",
        "source": "/shop-platform/my-shop",
        "type": type_,
        "time": at.isoformat(),
        "datacontenttype": "application/json",
        "data": {"order_id": order, **data},
    }


events = [
    event(
        "order.paid",
        paid,
        {
            "shop_id": "S-mine",
            "customer_id": customer,
            "paid_at": paid.isoformat(),
            "currency": "CNY",
            "lines": [
                {
                    "line_id": "L1",
                    "sku": "SWEATER-M",
                    "title": "Wool sweater",
                    "category": "apparel",
                    "quantity": 1,
                    "paid_amount": 19900,
                }
            ],
            "shipping_fee_paid": 1000,
            "standard_shipping_fee": 1000,
            "free_shipping_threshold": 29900,
            "shipping_insurance": False,
            "presale_ship_by": None,
            "payments": [{"method": "alipay", "amount": 20900}],
            "customer": {
                "name": "My Buyer",
                "phone": "13800000001",
                "email": "me@example.com",
                "preferred_channel": "sms",
            },
        },
    ),
    event(
        "order.shipped",
        shipped,
        {
            "shipped_at": shipped.isoformat(),
            "carrier": "SF",
            "tracking_no": f"SF{run}",
        },
    ),
    event(
        "parcel.signed",
        signed,
        {
            "leg": "outbound",
            "tracking_no": f"SF{run}",
            "signed_at": signed.isoformat(),
        },
    ),
    event(
        "return.requested",
        now,
        {
            "return_id": ret,
            "customer_id": customer,
            "kind": "refund",
            "reason": "size_fit",
            "lines": [{"line_id": "L1", "quantity": 1}],
            "condition": [],
            "evidence_urls": [],
            "requested_at": now.isoformat(),
        },
    ),
    event(
        "return.shipped",
        now,
        {
            "return_id": ret,
            "carrier": "YTO",
            "tracking_no": f"YT{run}",
            "shipped_at": now.isoformat(),
            "shipping_fee_paid": 1200,
        },
    ),
    event(
        "parcel.signed",
        now,
        {
            "leg": "return",
            "return_id": ret,
            "tracking_no": f"YT{run}",
            "signed_at": now.isoformat(),
        },
    ),
]
for e in events:
    print(json.dumps(e, ensure_ascii=False))
print(f"order {order}: then `.venv/bin/aftersales refunds {order}`", file=sys.stderr)
