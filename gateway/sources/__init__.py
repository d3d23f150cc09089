"""Where data comes in: the MQTT subscriber (and, later, camera samplers)."""

from gateway.sources.mqtt import MqttMessage, MqttSubscriber, topic_matches

__all__ = ["MqttMessage", "MqttSubscriber", "topic_matches"]
