"""callvault: event-driven workers that keep phone-call recordings lawful under the GDPR."""

__version__ = "0.1.0"
