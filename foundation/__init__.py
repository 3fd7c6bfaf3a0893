"""The foundation every geosaga process stands on: settings, the Temporal client, the payload
codec, security and telemetry. It imports no other package of the project."""
