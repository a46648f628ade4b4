"""The publish path's own encoding of basic properties gives pamqp's bytes exactly: the wire
does not change, whatever the message."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands as spec

from bus.message import event_message
from bus.transport._amqp_delivery import properties
from bus.transport._amqp_properties import FastProperties

short = st.none() | st.text(max_size=20).filter(lambda s: len(s.encode()) <= 255)
header_values = (
    st.text(max_size=40)
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.booleans()
    | st.none()
)
headers = st.none() | st.dictionaries(st.text(min_size=1, max_size=12), header_values, max_size=5)
times = st.none() | st.datetimes(
    min_value=datetime.datetime(1971, 1, 1), max_value=datetime.datetime(2200, 1, 1)
).map(lambda t: t.replace(tzinfo=datetime.UTC))


@given(
    content_type=short,
    headers=headers,
    delivery_mode=st.none() | st.sampled_from([1, 2]),
    priority=st.none() | st.integers(min_value=0, max_value=9),
    correlation_id=short,
    reply_to=short,
    expiration=short,
    message_id=short,
    timestamp=times,
    message_type=short,
    app_id=short,
)
def test_the_bytes_are_pamqps(**fields):
    assert FastProperties(**fields).marshal() == spec.Basic.Properties(**fields).marshal()


def test_an_event_message_with_its_cloudevents_headers_is_encoded_as_pamqp_does():
    time = datetime.datetime(2026, 11, 30, 22, 45, 1, 123456, tzinfo=datetime.UTC)
    for traceparent in (None, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"):
        for source in ("govbus/discovery", "govbus/agent/web", "gövbus/ünïcode"):
            message = event_message(
                event_type="registry.heartbeat",
                body=b"{}",
                event_id="0193b3c6-1f2e-7a7b-9c1d-2e3f4a5b6c7d",
                source=source,
                time=time,
                traceparent=traceparent,
            )
            fast = properties(message)
            assert isinstance(fast, FastProperties)
            fields = {name: getattr(fast, name) for name in spec.Basic.Properties.__slots__}
            assert fast.marshal() == spec.Basic.Properties(**fields).marshal()
            assert fast.marshal() == properties(message).marshal()  # the kept entries too
