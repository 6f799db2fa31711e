"""The automated inbox: patient-submitted photos scored without a click.

Triggers (subscription notifications, the poller) hand a photo version to :mod:`intake`, which
applies the site rules, records the version once (:mod:`store`) and queues a job; the job runs
through the ordinary workers, and :mod:`followup` asks for a retake when the photo failed the
quality gate. :mod:`backend_auth` is the SMART Backend Services client that all of it uses.
"""
