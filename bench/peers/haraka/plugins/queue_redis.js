// queue_redis: the minimal Haraka queue for maildrop-bench. Accepts recipients at the domains in
// config/queue_redis.ini and answers 250 to DATA only after Redis has stored the whole message
// (SET haraka:msg:<transaction uuid>), as Maildrop's ingest answers only after JetStream stored it.
const redis = require('redis')

exports.register = function () {
    this.cfg = this.config.get('queue_redis.ini')
    this.domains = new Set(
        String(this.cfg.main.domains || '')
            .split(',')
            .map((d) => d.trim().toLowerCase())
            .filter(Boolean),
    )
    this.register_hook('init_child', 'connect_redis')
    this.register_hook('init_master', 'connect_redis')
}

exports.connect_redis = function (next) {
    if (this.db) return next()
    this.db = redis.createClient({ url: this.cfg.main.url })
    this.db.on('error', (err) => this.logerror(`redis: ${err.message}`))
    this.db.connect().then(() => next(), (err) => next(DENYSOFT, err.message))
}

exports.hook_rcpt = function (next, connection, params) {
    const host = (params[0].host || '').toLowerCase()
    if (this.domains.has(host)) return next(OK)
    next(DENY, 'not a domain of ours')
}

exports.hook_queue = function (next, connection) {
    const txn = connection.transaction
    txn.message_stream.get_data((data) => {
        this.db.set(`haraka:msg:${txn.uuid}`, data).then(
            () => next(OK, 'stored'),
            (err) => next(DENYSOFT, `cannot store: ${err.message}`),
        )
    })
}
