"""Topic templates: topic levels to tags, and the topic filter they derive."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.decoding import JsonDecoder, Route, TopicTemplate
from gateway.errors import PayloadError
from gateway.points import encode_line
from gateway.sources.mqtt import MqttMessage, topic_matches

# C09's pattern root/+/+/+/data/+/# with tags _/manufacturer/model/serial/_/data_format.
C09_TEMPLATE = "root/{manufacturer}/{model}/{serial}/data/{data_format}/#"
RX_NS = 1_717_200_060_000_000_000


def _message(topic: str, payload: bytes, received_ns: int = RX_NS) -> MqttMessage:
    return MqttMessage(topic, payload, qos=1, retain=False, received_ns=received_ns)


def _route(
    template: str, measurement: str = "telemetry", topic_filter: str = "", **tags: str
) -> Route:
    compiled = TopicTemplate.parse(template)
    return Route(
        topic_filter=topic_filter or compiled.topic_filter,
        qos=1,
        template=compiled,
        measurement=measurement,
        static_tags=tags,
        decoder=JsonDecoder(),
    )


def test_topic_template_c09_stores_matching_topics_and_counts_the_rest():
    """Test that C09's five inputs give its three lines and two unmatched topics."""
    # C09 subscribes to root/#, which a broker never matches with /root/...; a
    # filter of # delivers all five inputs, so the template alone decides.
    route = _route(C09_TEMPLATE, topic_filter="#")
    inputs = [
        ("root/acme/x100/SN0001/data/json", b'{"t":21.5}'),
        ("root/acme/x100/SN0001/data/json/extra/deeper", b'{"t":21.6}'),
        ("root/acme/x100/data", b'{"t":21.7}'),
        ("/root/acme/x100/SN0002/data/json", b'{"t":21.8}'),
        ("root/acme//SN0003/data/json", b'{"t":21.9}'),
    ]
    lines: list[str] = []
    unmatched = 0
    for index, (topic, payload) in enumerate(inputs, start=1):
        assert route.accepts(topic)
        try:
            decoded = route.decode(_message(topic, payload, RX_NS + index))
        except PayloadError as exc:
            assert exc.reason == "unmatched_topic"
            assert exc.topic == topic
            unmatched += 1
            continue
        lines += [encode_line(point) for point in decoded.points]

    assert lines == [
        (
            "telemetry,data_format=json,manufacturer=acme,model=x100,serial=SN0001 "
            f"t=21.5 {RX_NS + 1}"
        ),
        (
            "telemetry,data_format=json,manufacturer=acme,model=x100,serial=SN0001 "
            f"t=21.6 {RX_NS + 2}"
        ),
        (
            "telemetry,data_format=json,manufacturer=acme,serial=SN0003 "
            f"t=21.9 {RX_NS + 5}"
        ),
    ]
    assert unmatched == 2


def test_topic_template_captures_named_levels_as_tags():
    """Test that each {name} level becomes a tag holding that level's text."""
    template = TopicTemplate.parse("city/{agency}/{device_type}/{device_id}/telemetry")

    captured = template.match("city/bpbd/river_gauge/rg-ciliwung-01/telemetry")

    assert captured == {
        "agency": "bpbd",
        "device_type": "river_gauge",
        "device_id": "rg-ciliwung-01",
    }
    assert template.tag_names == ("agency", "device_type", "device_id")


def test_topic_template_ignores_levels_after_final_hash():
    """Test that levels past a final # are matched and give no tags."""
    template = TopicTemplate.parse(C09_TEMPLATE)

    deep = template.match("root/acme/x100/SN0001/data/json/extra/deeper")
    exact = template.match("root/acme/x100/SN0001/data/json")

    assert (
        deep
        == exact
        == {
            "manufacturer": "acme",
            "model": "x100",
            "serial": "SN0001",
            "data_format": "json",
        }
    )


@pytest.mark.parametrize(
    "topic",
    ["root/acme/x100/data", "root", "", "root/acme/x100/SN0001/data"],
)
def test_topic_template_refuses_short_topic(topic):
    """Test that a topic with fewer levels than the template is not matched."""
    assert TopicTemplate.parse(C09_TEMPLATE).match(topic) is None


def test_topic_template_refuses_extra_levels_without_hash():
    """Test that a template without # refuses a topic with more levels."""
    template = TopicTemplate.parse("city/{agency}/{device_id}")

    assert template.match("city/bpbd/rg-01/extra") is None
    assert template.match("city/bpbd/rg-01") == {"agency": "bpbd", "device_id": "rg-01"}


def test_topic_template_does_not_shift_levels_for_leading_slash():
    """Test that a leading / is an empty first level, never a shifted match."""
    template = TopicTemplate.parse(C09_TEMPLATE)

    assert template.match("/root/acme/x100/SN0002/data/json") is None


def test_topic_template_with_leading_slash_matches_only_leading_slash_topics():
    """Test that a template starting with / expects an empty first level."""
    template = TopicTemplate.parse("/{site}/telemetry")

    assert template.match("/depok/telemetry") == {"site": "depok"}
    assert template.match("depok/telemetry") is None
    assert template.topic_filter == "/+/telemetry"


def test_topic_template_captures_empty_level_as_empty_text():
    """Test that an empty level is captured as empty text, not skipped."""
    template = TopicTemplate.parse(C09_TEMPLATE)

    captured = template.match("root/acme//SN0003/data/json")

    assert captured == {
        "manufacturer": "acme",
        "model": "",
        "serial": "SN0003",
        "data_format": "json",
    }


def test_route_leaves_empty_tag_out_of_the_line():
    """Test that a tag from an empty level is omitted, and the rest is stored."""
    route = _route("city/{agency}/{device_id}/telemetry", site="depok")

    decoded = route.decode(_message("city//rg-01/telemetry", b'{"level_cm": 182.4}'))

    line = encode_line(decoded.points[0])
    assert line == f"telemetry,device_id=rg-01,site=depok level_cm=182.4 {RX_NS}"
    assert "agency=" not in line


@pytest.mark.parametrize("skip", ["+", "{_}"])
def test_topic_template_skips_plus_and_underscore_levels(skip):
    """Test that + and {_} match any one level without making a tag."""
    template = TopicTemplate.parse(f"{skip}/{{device_id}}/{skip}/state")

    assert template.match("esphome/node-3/sensor/state") == {"device_id": "node-3"}
    assert template.match("esphome/node-3/state") is None
    assert template.tag_names == ("device_id",)


@pytest.mark.parametrize(
    ("template", "topic_filter"),
    [
        (C09_TEMPLATE, "root/+/+/+/data/+/#"),
        ("city/{agency}/{device_type}/{device_id}/telemetry", "city/+/+/+/telemetry"),
        ("+/{_}/{x}", "+/+/+"),
        ("#", "#"),
        ("/{site}/", "/+/"),
    ],
)
def test_topic_template_derives_topic_filter(template, topic_filter):
    """Test that the derived filter has + for every wildcard level and keeps #."""
    assert TopicTemplate.parse(template).topic_filter == topic_filter


def test_topic_template_hash_also_matches_the_parent_level():
    """Test that a final # matches zero remaining levels, as in MQTT."""
    template = TopicTemplate.parse("sensors/{device_id}/#")

    assert template.match("sensors/aq-01") == {"device_id": "aq-01"}
    assert topic_matches(template.topic_filter, "sensors/aq-01")


@pytest.mark.parametrize(
    ("template", "bad_level"),
    [
        ("city/#/telemetry", "#"),
        ("city/{agency}#", "{agency}#"),
        ("city/a+b", "a+b"),
        ("city/{1agency}", "{1agency}"),
        ("city/{agency", "{agency"),
        ("city/agency}", "agency}"),
        ("city/{}", "{}"),
        ("city/{device-id}", "{device-id}"),
        ("city/{agency}{device_id}", "{agency}{device_id}"),
        ("city/x{agency}", "x{agency}"),
    ],
)
def test_topic_template_rejects_invalid_level_naming_it(template, bad_level):
    """Test that an invalid level raises ValueError naming that level."""
    with pytest.raises(ValueError, match="level") as caught:
        TopicTemplate.parse(template)

    assert repr(bad_level) in str(caught.value)
    assert repr(template) in str(caught.value)


def test_topic_template_rejects_duplicate_tag_names():
    """Test that a tag named twice raises ValueError naming the tag."""
    with pytest.raises(ValueError, match="'device_id' twice"):
        TopicTemplate.parse("{device_id}/x/{device_id}")


def test_topic_template_allows_repeated_skips():
    """Test that {_} may appear on many levels, since it names no tag."""
    template = TopicTemplate.parse("{_}/{_}/{device_id}")

    assert template.match("a/b/c") == {"device_id": "c"}


def test_topic_template_refuses_dollar_topics_on_leading_wildcard():
    """Test that a leading wildcard does not match $SYS topics, as in MQTT."""
    assert TopicTemplate.parse("{broker}/#").match("$SYS/broker/uptime") is None
    assert TopicTemplate.parse("#").match("$SYS/broker/uptime") is None
    assert TopicTemplate.parse("$SYS/{broker}/#").match("$SYS/broker/uptime") == {
        "broker": "broker"
    }


def test_route_rejects_topic_that_does_not_fit_template():
    """Test that a route refuses an unfitting topic with reason unmatched_topic."""
    route = _route(C09_TEMPLATE)

    with pytest.raises(PayloadError) as caught:
        route.decode(_message("root/acme/x100/data", b'{"t": 21.7}'))

    assert caught.value.reason == "unmatched_topic"
    assert C09_TEMPLATE in caught.value.detail


def test_route_names_measurement_from_topic_level():
    """Test that {name} in the measurement is replaced by that topic level."""
    route = _route("city/{agency}/{device_type}/{device_id}", "{device_type}")

    decoded = route.decode(_message("city/dlh/air_quality/aq-01", b'{"pm25": 41}'))

    point = decoded.points[0]
    assert point.measurement == "air_quality"
    assert point.tags == {
        "agency": "dlh",
        "device_type": "air_quality",
        "device_id": "aq-01",
    }


def test_route_rejects_empty_measurement_from_empty_level():
    """Test that a measurement made empty by an empty level is a PayloadError."""
    route = _route("city/{device_type}/{device_id}", "{device_type}")

    with pytest.raises(PayloadError) as caught:
        route.decode(_message("city//aq-01", b'{"pm25": 41}'))

    assert caught.value.reason == "empty_measurement"


def test_route_lets_topic_tags_override_static_tags():
    """Test that a captured level wins over a fixed tag of the same name."""
    route = _route("city/{agency}/{device_id}", agency="unknown", site="depok")

    decoded = route.decode(_message("city/bpbd/rg-01", b'{"level_cm": 1}'))

    assert decoded.points[0].tags == {
        "agency": "bpbd",
        "site": "depok",
        "device_id": "rg-01",
    }


_LEVELS = st.one_of(
    st.sampled_from(["", "root", "acme", "data", "json", "$SYS", "a b", "dépok"]),
    st.text(st.characters(blacklist_characters="/\x00"), max_size=4),
)
_TOPICS = st.one_of(
    st.lists(_LEVELS, min_size=1, max_size=8).map("/".join),
    st.text(max_size=30),
)


@st.composite
def _templates(draw: st.DrawFn) -> str:
    kinds = draw(
        st.lists(
            st.sampled_from(["root", "data", "", "$SYS", "+", "{_}", "name"]),
            min_size=1,
            max_size=6,
        )
    )
    levels = [f"{{tag{i}}}" if kind == "name" else kind for i, kind in enumerate(kinds)]
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


@given(template_text=_templates(), topic=_TOPICS)
def test_topic_template_agrees_with_its_topic_filter(template_text, topic):
    """Test that match never raises and matches exactly where its filter matches."""
    template = TopicTemplate.parse(template_text)

    captured = template.match(topic)

    assert (captured is not None) == topic_matches(template.topic_filter, topic)
    if captured is not None:
        levels = topic.split("/")
        for index, name in enumerate(template.names):
            if name:
                assert captured[name] == levels[index]


@given(topic=_TOPICS)
def test_topic_template_c09_never_raises_on_random_topics(topic):
    """Test that C09's template never raises and agrees with root/+/+/+/data/+/#."""
    template = TopicTemplate.parse(C09_TEMPLATE)

    captured = template.match(topic)

    if captured is not None:
        assert topic_matches(template.topic_filter, topic)
        assert topic_matches("root/#", topic)
