"""Call backs as a queue with an owner and a result.

Every finished call that left a client waiting for us — a voicemail, a call abandoned
after (or before) a choice, an urgent call nobody accepted, a consultation nobody
answered, a ticket that could not be created — becomes one `CallbackItem`, oldest first
(`queue`). A specialist takes one, presses «Перезвонить»: the service rings their own
phone through Twilio's Calls API and, once they press 1, bridges the client with
`<Dial>` (`dialing`). The result — reached, not reached, a wrong number — is recorded with
a note; an unanswered attempt goes back to the queue with the attempt counted.

An item is due `CALLBACK_SLA_MINUTES` working minutes after the call (the business
calendar: a call at night is due half an hour after the next opening); an overdue item
is a problem row of the log and one SMS to the head of support (`sla`).
"""
