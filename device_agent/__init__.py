"""The IoTCast device agent: a simulated air-quality sensor publishing over MQTT with mutual TLS.

Runs on a device (or anywhere) with only awsiotsdk and the standard library: it imports nothing
from Django. Start it with `python -m device_agent --kit DIR`.
"""
