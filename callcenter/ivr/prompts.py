"""Every text the caller hears, in one place an operator can edit.

Plain Russian sentences for Twilio's `<Say>` (voice from the `TTS_VOICE` setting,
`language="ru-RU"`). Placeholders in braces are filled in by the IVR:
`{support_name}` (setting `SUPPORT_NAME`), `{number}` (a ticket number said digit by digit),
`{deadline}` (in words: "до восемнадцати часов по московскому времени, в понедельник,
первого декабря"), `{status}`, `{plates}`,
`{options}`. Keep sentences short: the caller cannot scroll back.

Menu option lines are built from the regulation's topic titles and product names; only the
framing words are here.
"""

from __future__ import annotations

# ------------------------------------------------------------------ greeting

# The greeting, the recording notice and the hours notice are said inside the main menu's
# <Gather>: a key pressed during them already acts.
GREETING = "Здравствуйте! Это {support_name}, разговор записывается."
# {resumes}: when configuration work resumes, in words ("в четверг, пятого ноября, в девять
# тридцать по московскому времени"), right for a night, a holiday or a short day.
AFTER_HOURS = "Сейчас нерабочее время. Настройка — {resumes}."

# ------------------------------------------------------------------ main menu

MAIN_MENU = (
    "Консультация — 1. Новая проблема — 2. Критический сбой сервера — 3. Угон — 4. "
    "Статус заявки — 5. Специалист — 0. Можно сказать голосом."
)
# A known incident (`callcenter.incidents`), said inside the first <Gather> before the main
# menu. {product}: the product's spoken name; {number}: the ticket, digit by digit.
INCIDENT_ANNOUNCEMENT = (
    "Нам известно о сбое {product}, заявка номер {number}, специалисты уже работают."
)
# The incident's ticket has no number yet (detected a moment ago, the portal still making it).
INCIDENT_ANNOUNCEMENT_UNNUMBERED = "Нам известно о сбое {product}, специалисты уже работают."
INCIDENT_OFFER_SMS = (
    "Если вы звоните по этому сбою, нажмите 1 — мы зарегистрируем ваш звонок и пришлём "
    "СМС, когда сбой будет устранён. По другим вопросам оставайтесь на линии."
)
# The caller's number cannot take an SMS: nothing is promised by SMS.
INCIDENT_OFFER_NO_SMS = (
    "Если вы звоните по этому сбою, нажмите 1 — мы зарегистрируем ваш звонок. "
    "По другим вопросам оставайтесь на линии."
)
INCIDENT_JOINED = "Ваш звонок зарегистрирован по заявке номер {number}."
INCIDENT_JOINED_UNNUMBERED = "Ваш звонок зарегистрирован по этому сбою."
INCIDENT_JOINED_SMS = "Когда сбой будет устранён, мы пришлём СМС."
INCIDENT_JOINED_NO_SMS = "Специалисты сообщат, когда сбой будет устранён."
# A choice recognised from speech that wakes the on-duty specialist is confirmed first.
CONFIRM_CRITICAL = "Вы сообщаете о критическом сбое сервера? Да — 1, нет — 2."
CONFIRM_STOLEN = "Вы сообщаете об угоне транспортного средства? Да — 1, нет — 2."
# Said in every menu and free-answer step after its own text.
NAVIGATION = "Специалист — 0, главное меню — 9."

# ------------------------------------------------------------------ retries

NOT_HEARD = "Извините, я вас не расслышала."
NOT_UNDERSTOOD = "Извините, такого пункта нет."
TOO_MANY_TRIES = "Соединяю вас со специалистом."

# ------------------------------------------------------------------ consultation / routing

CONNECTING = "Соединяю вас со специалистом. Пожалуйста, оставайтесь на линии."
CONNECTING_URGENT = "Соединяю с дежурным специалистом."

# ------------------------------------------------------------------ new problem

TOPIC_MENU = "Выберите тему обращения. {options} Повторить — звёздочка."
PRODUCT_MENU = "Выберите продукт. {options} Повторить — звёздочка."
MENU_OPTION = "{title} — {key}."
PRODUCT_UNKNOWN = "Не знаю"
VEHICLES = (
    "Назовите госномер транспортного средства, например: а сто двадцать три вэ эс "
    "семьдесят семь. Если машин несколько, назовите номера подряд. "
    "Можно набрать цифры номера и нажать решётку. Если номер не нужен, просто подождите."
)
VEHICLES_NOTED = "Записала: {plates}."
VEHICLES_SKIPPED = "Хорошо, без номера."
CALLER_NAME = (
    "Мы не нашли ваш номер в списке клиентов. Пожалуйста, назовите ваше имя и название компании."
)
CALLER_NAME_THANKS = "Спасибо."
# The caller's number is withheld: one to call back, typed on the keypad.
CALLBACK_NUMBER = (
    "Ваш номер скрыт. Наберите номер телефона для обратного звонка и нажмите решётку. "
    "Не нужно — просто подождите."
)
CALLBACK_NUMBER_NOTED = "Записала номер: {digits}."
CALLBACK_NUMBER_INVALID = "Это не похоже на российский номер телефона."
DESCRIPTION = (
    "После сигнала опишите, пожалуйста, проблему и что к ней привело. "
    "У вас есть три минуты. Когда закончите, нажмите решётку."
)
DESCRIPTION_EMPTY = "Я не услышала описания. Попробуем ещё раз."
REGISTERING = "Спасибо. Регистрирую вашу заявку, это займёт несколько секунд."
TICKET_NUMBER = "Ваша заявка зарегистрирована. Номер заявки: {number}. Повторяю: {number}."
FIRST_STAGE_DEADLINE = "Специалист ответит вам {deadline}."
RESOLUTION_DEADLINE = "Срок решения — {deadline}."
RESOLUTION_BY_AGREEMENT = "Срок решения специалист согласует с вами."
NUMBER_BY_SMS = "Номер заявки мы отправим вам в СМС."
NUMBER_LATER = (
    "Заявка принята. Номер заявки сообщит специалист, "
    "он также придёт на электронную почту, указанную в договоре."
)
SMS_TOO = "Номер заявки и сроки мы также отправим в СМС."
TICKET_DONE_MENU = (
    "Чтобы повторить номер заявки, нажмите звёздочку. Чтобы соединиться со специалистом, нажмите 0."
)
CONNECTING_OPTION = "Чтобы соединиться со специалистом, нажмите 0."
GOODBYE = "Спасибо за обращение. До свидания!"

# ------------------------------------------------------------------ critical failure

# Silence, "#" alone (Twilio delivers nothing) or a spoken "нет" mean "no ticket", at once.
CRITICAL_NUMBER = (
    "Есть заявка по этому сбою — наберите её номер и решётку. Нет — оставайтесь на линии."
)
CRITICAL_DUPLICATED = (
    "Звонок по заявке номер {number} принят, заявке присвоен критический приоритет."
)
CRITICAL_NOT_FOUND = "Заявка с номером {number} не найдена."

# ------------------------------------------------------------------ stolen vehicle

STOLEN_VEHICLES = (
    "Назовите госномер угнанного транспортного средства, например: а сто двадцать три "
    "вэ эс семьдесят семь, или наберите цифры номера и решётку."
)
STOLEN_NEW = "Регистрирую заявку об угоне."

# ------------------------------------------------------------------ ticket status

STATUS_NUMBER = "Наберите номер заявки и нажмите решётку, или назовите его."
STATUS_ANSWER = "Заявка {number}. Статус: {status}."
STATUS_REFUSED = (
    "К сожалению, мы не можем сообщить статус этой заявки: она не найдена или "
    "оформлена другой организацией. Статус заявки сообщается только сотрудникам "
    "организации, которая её подала."
)
# The caller's number is withheld or not in the directory: we cannot tell whose ticket
# they may hear about, so a specialist does.
STATUS_UNKNOWN_CALLER = (
    "Ваш номер скрыт или его нет в списке клиентов, поэтому статус заявки сообщит "
    "специалист. Оставайтесь на линии, чтобы соединиться. Главное меню — 9."
)
# A ticket past its resolution deadline, not yet solved ({deadline}: "до ... по московскому
# времени, ...").
STATUS_OVERDUE = "Заявка просрочена: срок решения был {deadline}."
# A solved ticket: the regulation's auto-close after two working days, and the objection.
STATUS_SOLVED = "Заявка решена и закроется автоматически через два рабочих дня после решения."
STATUS_SOLVED_MENU = (
    "Если вы не согласны с решением, нажмите 1, и заявка вернётся в работу. "
    "Статус другой заявки — 2. Повторить — звёздочка. Специалист — 0."
)
STATUS_OBJECTION_RECORDED = "Ваше несогласие с решением записано в заявку, она вернётся в работу."
STATUS_OBJECTION_FAILED = "К сожалению, записать несогласие сейчас не удалось."
# The portal entry the objection leaves on the ticket ({call}: the CallSid).
STATUS_OBJECTION_ENTRY = (
    "Автор заявки по телефону не согласен с решением (звонок {call}): снять признак "
    "«Автозакрытие» и вернуть заявку в работу."
)
STATUS_UNAVAILABLE = (
    "К сожалению, сейчас не удаётся получить статус заявки. "
    "Чтобы попробовать ещё раз, нажмите 1. Чтобы соединиться со специалистом, нажмите 0. "
    "Вы также можете позвонить позже."
)
STATUS_DONE_MENU = (
    "Чтобы повторить, нажмите звёздочку. Чтобы узнать статус другой заявки, нажмите 1. "
    "Чтобы соединиться со специалистом, нажмите 0."
)

# ------------------------------------------------------------------ repeat callers

# Said inside the first <Gather> to a caller with open tickets (with the greeting before it);
# silence goes on to the main menu at once. {status} is the portal's status, lower case.
REPEAT_ONE = (
    "У вас открыта заявка номер {number}, статус — {status}. Чтобы дополнить её, нажмите 1."
)
REPEAT_SEVERAL = "У вас открыты заявки."
REPEAT_EACH = "Заявка номер {number}, статус — {status}: чтобы дополнить её, нажмите {key}."
REPEAT_OTHERWISE = "По другим вопросам оставайтесь на линии."
ADDITION = (
    "После сигнала коротко расскажите, что добавить к заявке номер {number}. "
    "Когда закончите, нажмите решётку."
)
ADDITION_EMPTY = "Я не услышала дополнения. Попробуем ещё раз."
ADDITION_TAKEN = "Спасибо, ваше дополнение будет приложено к заявке номер {number}."
ADDITION_STATUS = "Статус заявки — {status}."
# {moment}: in words, Moscow time ("в понедельник, первого декабря, в восемнадцать часов
# по московскому времени").
ADDITION_DEADLINE = "Срок решения — {moment}."
ADDITION_DONE_MENU = (
    "Чтобы повторить, нажмите звёздочку. Чтобы соединиться со специалистом, нажмите 0."
)

# ------------------------------------------------------------------ failures

APOLOGY = "Извините, у нас техническая неполадка. Соединяю вас с дежурным специалистом."
# The same with no duty phone to dial: the voicemail follows at once.
APOLOGY_NO_DUTY_PHONE = "Извините, у нас техническая неполадка."
FALLBACK_VOICEMAIL = (
    "К сожалению, сейчас никто не может ответить. После сигнала назовите, пожалуйста, "
    "ваше имя, компанию и суть обращения, затем нажмите решётку. Мы перезвоним вам."
)
FALLBACK_THANKS = "Спасибо, ваше сообщение записано. Мы перезвоним вам. До свидания!"

# ================================================================== on-duty routing
# (callcenter/routing.py, webhooks/routing.py) — kept last in this file.

# What a specialist hears on answering, before the caller is connected (the whisper).
# {topic} is one of the ROUTING_TOPIC_* lines, {ticket} ROUTING_TICKET or
# ROUTING_TICKET_PENDING, {client} the organisation (or ROUTING_CLIENT_UNKNOWN).
ROUTING_WHISPER = "{topic}, {ticket}, {client}."
ROUTING_WHISPER_VEHICLES = "Госномер: {plates}."
ROUTING_WHISPER_PRESS_1 = "Нажмите 1, чтобы принять звонок."
ROUTING_TOPIC_CRITICAL = "Критический сбой сервера"
ROUTING_TOPIC_STOLEN = "Угон транспортного средства"
ROUTING_TOPIC_CONSULTATION = "Консультация"
ROUTING_TICKET = "заявка {number}"
ROUTING_TICKET_PENDING = "номер заявки уточняется"
ROUTING_TICKET_NONE = "без заявки"
ROUTING_CLIENT_UNKNOWN = "клиент не определён"
ROUTING_CALLER_HIDDEN = "номер скрыт"
ROUTING_WHISPER_CONNECTING = "Соединяю."

# What the caller hears.
ROUTING_NEXT_LEG = "Пожалуйста, оставайтесь на линии. Соединяю с другим специалистом."
ROUTING_NOBODY_ACCEPTED = (
    "К сожалению, сейчас никто из дежурных специалистов не ответил. "
    "Ваша заявка зарегистрирована, вам перезвонят."
)
# Added only when SMS alerts can go out at all (a Twilio account is set).
ROUTING_NOBODY_ACCEPTED_SMS = "Дежурные и руководитель поддержки получат SMS о вашем звонке."
ROUTING_TICKET_NUMBER = "Номер заявки: {number}."
ROUTING_NO_ANSWER = "К сожалению, сейчас все специалисты заняты. Мы перезвоним вам."
# The same during working hours, with the call-back queue offered first, inside a <Gather>
# ({ordinal}: the caller's place in words, "третий"); no key goes on to the voicemail.
ROUTING_ALL_BUSY = "К сожалению, сейчас все специалисты заняты."
ROUTING_NOBODY_FREE = "К сожалению, сейчас нет свободного специалиста."
ROUTING_CALLBACK_OFFER = (
    "Чтобы мы перезвонили вам в порядке очереди, нажмите 1 — вы {ordinal} в очереди. "
    "Или оставьте сообщение после сигнала."
)
# A withheld caller who typed no number in the menu: the number is the answer.
ROUTING_CALLBACK_OFFER_TYPE = (
    "Ваш номер скрыт. Чтобы мы перезвонили вам в порядке очереди, наберите номер телефона "
    "и нажмите решётку — вы {ordinal} в очереди. Или оставьте сообщение после сигнала."
)
# {number}: the number we will call, group by group ("восемь, девять один шесть, ...").
ROUTING_CALLBACK_BOOKED = "Вы в очереди на обратный звонок. Мы перезвоним вам на номер {number}."
# Nobody to dial at all (an empty roster and no duty phone).
ROUTING_NOBODY_ON_DUTY = "К сожалению, сейчас нет свободного специалиста. Мы перезвоним вам."
ROUTING_LEAVE_MESSAGE = (
    "После сигнала оставьте, пожалуйста, сообщение: ваше имя, компанию и суть вопроса, "
    "затем нажмите решётку."
)
ROUTING_MESSAGE_THANKS = "Спасибо, ваше сообщение записано. Мы перезвоним вам. До свидания!"
ROUTING_NO_MESSAGE = "Мы перезвоним вам как можно скорее. До свидания!"

# The knowledge base (regulation, section VII), offered to a consultation caller once a
# specialist answered or when nobody was free; only to a number an SMS reaches.
KB_OFFER = "Отправить ссылку на базу знаний по СМС — 1."
KB_LINK_QUEUED = "Ссылку на базу знаний отправим вам в СМС. До свидания!"
KB_LINK_FAILED = "К сожалению, отправить СМС сейчас не получилось. До свидания!"

# The SMS every member of the urgent chain gets when nobody accepted the call.
ROUTING_ALERT_SMS = (
    "SKAI ТП: срочный звонок не принят. {topic}, {ticket}, {client}, тел. {caller}. "
    "Перезвоните клиенту."
)

# The one SMS the on-duty specialist gets when an urgent caller hung up before a word.
MISSED_URGENT_SMS = "SKAI ТП: пропущен срочный звонок ({topic}), перезвоните {caller}."
