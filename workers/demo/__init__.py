"""What ``make run`` shows: demo telephony traffic (``traffic``) and a narrated tour of the
whole lifecycle of recordings (``lifecycle``)."""
