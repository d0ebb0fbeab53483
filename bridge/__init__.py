"""The bridge: MQTT in and out, persistence, commands, the event bus, the CLI."""
