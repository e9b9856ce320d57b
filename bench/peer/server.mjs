// node-oidc-provider configured as khoa is in `khoa-bench run`, for the comparison
// (`khoa-bench run --peer`). scripts/bench.sh installs oidc-provider from npm into a
// temporary folder and starts this file there; nothing of it is kept.
//
// Equivalent configuration: RS256 keys, an in-memory adapter, its default
// opaque access tokens, ID tokens for `openid`, refresh tokens rotated on every use,
// PKCE, a first-party client whose consent is implied (khoa: --skip-consent), a
// client_credentials client, introspection and revocation enabled. Login is
// accepted without a password (its password check is the application's code), so
// the `login` scenario is not compared.
//
// PEER_WORKERS=N (N > 1) runs N processes with Node.js `cluster` on one port, as one
// would deploy it on N cores. They share one signing key (made by the primary) and a
// Redis store (REDIS_URL), since a code or a token made in one process is presented
// to any of them; ioredis must then be installed beside oidc-provider.
import cluster from 'node:cluster';
import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

// Its built-in development adapter keeps at most 1,000 entries per model (an LRU)
// and so drops live tokens under load (userinfo then answers 401). This adapter
// keeps the same in-memory semantics without eviction; entries expire by their TTL.
const entries = new Map();

// An entry's key: its model and id (both adapters).
class Keyed {
  constructor(model) {
    this.model = model;
  }
  key(id) {
    return `${this.model}:${id}`;
  }
}

class MemoryAdapter extends Keyed {
  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    entries.set(key, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined });
    if (payload.grantId) {
      const grantKey = `grant:${payload.grantId}`;
      const keys = entries.get(grantKey) || [];
      keys.push(key);
      entries.set(grantKey, keys);
    }
    if (payload.uid) entries.set(`sessionUid:${payload.uid}`, id);
    if (payload.userCode) entries.set(`userCode:${payload.userCode}`, id);
  }
  async find(id) {
    const entry = entries.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt && entry.expiresAt < Date.now()) {
      entries.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }
  async findByUid(uid) {
    return this.find(entries.get(`sessionUid:${uid}`));
  }
  async findByUserCode(userCode) {
    return this.find(entries.get(`userCode:${userCode}`));
  }
  async destroy(id) {
    entries.delete(this.key(id));
  }
  async revokeByGrantId(grantId) {
    for (const key of entries.get(`grant:${grantId}`) || []) entries.delete(key);
    entries.delete(`grant:${grantId}`);
  }
  async consume(id) {
    const entry = entries.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }
}

// The same semantics over Redis, for several processes: an entry is a hash (its
// payload as JSON, and when it was consumed) that expires with its TTL; a grant's
// entries are a set, so that revoking the grant deletes them.
async function redisAdapter() {
  const { default: Redis } = await import('ioredis');
  const redis = new Redis(process.env.REDIS_URL, { enableAutoPipelining: true });
  return class RedisAdapter extends Keyed {
    async upsert(id, payload, expiresIn) {
      const key = this.key(id);
      const m = redis.multi().del(key).hset(key, 'payload', JSON.stringify(payload));
      if (expiresIn) m.expire(key, expiresIn);
      if (payload.grantId) {
        const grantKey = `grant:${payload.grantId}`;
        m.sadd(grantKey, key);
        if (expiresIn) m.expire(grantKey, expiresIn, 'GT').expire(grantKey, expiresIn, 'NX');
      }
      if (payload.uid) m.set(`sessionUid:${payload.uid}`, id, 'EX', expiresIn || 86400);
      if (payload.userCode) m.set(`userCode:${payload.userCode}`, id, 'EX', expiresIn || 600);
      await m.exec();
    }
    async find(id) {
      const [payload, consumed] = await redis.hmget(this.key(id), 'payload', 'consumed');
      if (!payload) return undefined;
      const found = JSON.parse(payload);
      if (consumed) found.consumed = Number(consumed);
      return found;
    }
    async findByUid(uid) {
      const id = await redis.get(`sessionUid:${uid}`);
      return id ? this.find(id) : undefined;
    }
    async findByUserCode(userCode) {
      const id = await redis.get(`userCode:${userCode}`);
      return id ? this.find(id) : undefined;
    }
    async destroy(id) {
      await redis.del(this.key(id));
    }
    async revokeByGrantId(grantId) {
      const grantKey = `grant:${grantId}`;
      const keys = await redis.smembers(grantKey);
      await redis.del(grantKey, ...keys);
    }
    async consume(id) {
      await redis.hset(this.key(id), 'consumed', Math.floor(Date.now() / 1000));
    }
  };
}

async function serve() {
  const port = Number(process.env.PORT);
  const issuer = `http://127.0.0.1:${port}`;
  const privateJwk = process.env.PEER_JWK
    ? JSON.parse(process.env.PEER_JWK)
    : generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const jwk = { ...privateJwk, alg: 'RS256', use: 'sig', kid: 'bench-rs256' };

  const provider = new Provider(issuer, {
    adapter: process.env.REDIS_URL ? await redisAdapter() : MemoryAdapter,
    clients: [
      {
        client_id: 'bench',
        client_secret: process.env.BENCH_SECRET,
        redirect_uris: [process.env.BENCH_CALLBACK],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'm2m',
        client_secret: process.env.BENCH_M2M_SECRET,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: 'api',
      },
    ],
    jwks: { keys: [jwk] },
    cookies: { keys: ['bench-cookie-signing-key-0123456789'] },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'api'],
    claims: { openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'] },
    findAccount: async (ctx, id) => ({
      accountId: id,
      claims: async () => ({ sub: id, name: 'Bench User', email: 'bench@example.com', email_verified: true }),
    }),
    features: {
      devInteractions: { enabled: false },
      introspection: { enabled: true },
      revocation: { enabled: true },
      clientCredentials: { enabled: true },
    },
    pkce: { required: () => true },
    rotateRefreshToken: true,
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    // A first-party client: consent is implied, once per session and client.
    loadExistingGrant: async (ctx) => {
      const clientId = ctx.oidc.client.clientId;
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(clientId);
      if (grantId) {
        const found = await ctx.oidc.provider.Grant.find(grantId);
        if (found) return found;
      }
      const grant = new ctx.oidc.provider.Grant({ clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid offline_access profile email');
      await grant.save();
      ctx.oidc.session.grantIdFor(clientId, grant.jti);
      return grant;
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 30 * 86400,
      Session: 86400,
      Grant: 86400,
      Interaction: 600,
      ClientCredentials: 3600,
    },
  });

  const callback = provider.callback();
  http
    .createServer(async (req, res) => {
      if (req.url.startsWith('/interaction/')) {
        try {
          await provider.interactionDetails(req, res);
          await provider.interactionFinished(req, res, { login: { accountId: 'bench' } }, { mergeWithLastSubmission: false });
        } catch (e) {
          res.statusCode = 400;
          res.end(String(e));
        }
        return;
      }
      callback(req, res);
    })
    .listen(port, '127.0.0.1', () => console.log(`peer ${process.pid} listening on ${issuer}`));
}

const workers = Number(process.env.PEER_WORKERS || 1);
if (workers > 1 && cluster.isPrimary) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const env = { PEER_JWK: JSON.stringify(privateKey.export({ format: 'jwk' })) };
  for (let i = 0; i < workers; i += 1) cluster.fork(env);
  cluster.on('exit', (worker, code) => {
    console.error(`worker ${worker.process.pid} exited (${code})`);
    process.exit(1);
  });
} else {
  await serve();
}
