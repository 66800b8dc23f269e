"""Work done after a webhook has answered: the jobs, who runs them, and the RQ worker.

    tasks.py    the jobs: module-level functions `job(services, *ids)`, safe to run twice
    runners.py  RqJobRunner (Redis), InlineJobRunner (threads in the web process)
    worker.py   `callcenter worker`: RQ's worker that hands jobs its Services and rides
                out Redis and PostgreSQL outages

Above the domain packages (tickets, calls, ivr, routing), below the wiring
(`callcenter.services`) and the web and CLI entry points: the jobs call into the domain,
never the reverse; the domain queues work through the `callcenter.ports.JobRunner` it is
handed.
"""
