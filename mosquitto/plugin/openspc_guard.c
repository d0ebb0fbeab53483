/*
 * openspc_guard: OpenSPC's plugin for Mosquitto 2.0 (plugin interface version 5).
 *
 * Mosquitto 2.0.11 has no configuration setting for any of these; docs/broker.md
 * ("The guard plugin") and docs/security.md explain why each rule exists.
 *
 * 1. Reserved client ids. A `reserve ID USER...` line of the rules file reserves the client
 *    id ID, and every id that starts with "ID-" (the bridge's partitions ID-p<k>, its
 *    Sparkplug edge client ID-spb), for the users named. Any other client, anonymous
 *    included, that connects with such an id is refused at CONNECT (not authorised) before
 *    it can touch the session of that id. A user named there still needs its password: the
 *    password file is checked after this plugin.
 * 2. Anonymous clients keep no session: an anonymous CONNECT without clean start (an MQTT
 *    3.1.1 persistent session, or an MQTT 5 session resumed) is refused.
 * 3. Offline queues are for the users on `queue USER...` lines only (the bridge): while any
 *    other client is disconnected, no message is queued for its session (the read check of
 *    the routing step says no), so a session left behind holds its subscriptions and nothing
 *    else.
 *
 * Configuration (after each `plugin` line, one per listener with per_listener_settings):
 *     plugin_opt_rules_file PATH      the rules file (written by `openspc users`)
 * The file is read at start (a missing or bad file stops the broker with one line in its
 * log) and again on every reload (SIGHUP); a reload that cannot read it keeps the rules it
 * had and logs why.
 *
 * Rules file: one rule a line, words separated by spaces; '#' starts a comment line.
 *     reserve openspc-bridge bridge
 *     queue bridge
 *
 * Build: cc -shared -fPIC -O2 -o openspc_guard.so openspc_guard.c
 *        (headers from Debian's mosquitto-dev and libmosquitto-dev)
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define GUARD "openspc_guard"
#define MAX_WORDS 64
#define MAX_LINE 4096

struct reservation {
	char *client_id;
	size_t len;
	char **users;
	int user_count;
};

struct rules {
	struct reservation *reserved;
	int reserved_count;
	char **queue_users;
	int queue_count;
};

/* A set of pointers (the clients connected right now), open addressing. */
#define SLOT_FREE NULL
#define SLOT_GONE ((const struct mosquitto *)1)

struct client_set {
	const struct mosquitto **slots;
	size_t capacity; /* a power of two */
	size_t used;     /* live + gone slots */
	size_t live;
};

struct guard {
	mosquitto_plugin_id_t *identifier;
	char *rules_file;
	struct rules rules;
	struct client_set online;
	bool untracked; /* out of memory once: queue for everyone rather than deliver to no one */
};

/* ---- rules ------------------------------------------------------------------------------- */

static char *copy_string(const char *text)
{
	size_t len = strlen(text) + 1;
	char *copy = malloc(len);
	if(copy) memcpy(copy, text, len);
	return copy;
}

static void free_words(char **words, int count)
{
	for(int i = 0; i < count; i++) free(words[i]);
	free(words);
}

static void rules_free(struct rules *rules)
{
	for(int i = 0; i < rules->reserved_count; i++){
		free(rules->reserved[i].client_id);
		free_words(rules->reserved[i].users, rules->reserved[i].user_count);
	}
	free(rules->reserved);
	free_words(rules->queue_users, rules->queue_count);
	memset(rules, 0, sizeof(*rules));
}

static char **copy_words(char **words, int count)
{
	char **copy = calloc((size_t)(count > 0 ? count : 1), sizeof(char *));
	if(!copy) return NULL;
	for(int i = 0; i < count; i++){
		copy[i] = copy_string(words[i]);
		if(!copy[i]){
			free_words(copy, i);
			return NULL;
		}
	}
	return copy;
}

/* Read `path` into `out`; on failure log one line naming the file (and line) and return false. */
static bool rules_read(const char *path, struct rules *out)
{
	struct rules rules = {0};
	char line[MAX_LINE];
	int number = 0;
	FILE *file = fopen(path, "r");

	if(!file){
		mosquitto_log_printf(MOSQ_LOG_ERR, "%s: cannot read the rules file %s: %s",
				GUARD, path, strerror(errno));
		return false;
	}
	while(fgets(line, sizeof(line), file)){
		char *words[MAX_WORDS];
		int count = 0;
		char *save = NULL;
		number++;
		if(!strchr(line, '\n') && !feof(file)){
			mosquitto_log_printf(MOSQ_LOG_ERR, "%s: %s line %d is longer than %d characters",
					GUARD, path, number, MAX_LINE - 2);
			goto fail;
		}
		for(char *word = strtok_r(line, " \t\r\n", &save); word; word = strtok_r(NULL, " \t\r\n", &save)){
			if(count == MAX_WORDS){
				mosquitto_log_printf(MOSQ_LOG_ERR, "%s: %s line %d has more than %d words",
						GUARD, path, number, MAX_WORDS);
				goto fail;
			}
			words[count++] = word;
		}
		if(count == 0 || words[0][0] == '#') continue;

		if(!strcmp(words[0], "reserve") && count >= 3){
			struct reservation *grown = realloc(rules.reserved,
					(size_t)(rules.reserved_count + 1) * sizeof(struct reservation));
			if(!grown) goto nomem;
			rules.reserved = grown;
			struct reservation *entry = &rules.reserved[rules.reserved_count];
			entry->client_id = copy_string(words[1]);
			entry->len = strlen(words[1]);
			entry->users = copy_words(&words[2], count - 2);
			entry->user_count = count - 2;
			rules.reserved_count++;
			if(!entry->client_id || !entry->users) goto nomem;
		}else if(!strcmp(words[0], "queue") && count >= 2){
			char **grown = realloc(rules.queue_users,
					(size_t)(rules.queue_count + count - 1) * sizeof(char *));
			if(!grown) goto nomem;
			rules.queue_users = grown;
			for(int i = 1; i < count; i++){
				rules.queue_users[rules.queue_count] = copy_string(words[i]);
				if(!rules.queue_users[rules.queue_count]) goto nomem;
				rules.queue_count++;
			}
		}else{
			mosquitto_log_printf(MOSQ_LOG_ERR,
					"%s: %s line %d: expected 'reserve CLIENT_ID USER...' or 'queue USER...', got '%s'",
					GUARD, path, number, words[0]);
			goto fail;
		}
	}
	if(ferror(file)){
		mosquitto_log_printf(MOSQ_LOG_ERR, "%s: error reading %s", GUARD, path);
		goto fail;
	}
	fclose(file);
	*out = rules;
	return true;

nomem:
	mosquitto_log_printf(MOSQ_LOG_ERR, "%s: out of memory reading %s", GUARD, path);
fail:
	fclose(file);
	rules_free(&rules);
	return false;
}

static bool listed(char **users, int count, const char *user)
{
	for(int i = 0; i < count; i++){
		if(!strcmp(users[i], user)) return true;
	}
	return false;
}

/* The reservation `id` falls under (the id itself, or "<reserved>-..."), or NULL. */
static const struct reservation *reservation_of(const struct rules *rules, const char *id)
{
	if(!id) return NULL;
	for(int i = 0; i < rules->reserved_count; i++){
		const struct reservation *entry = &rules->reserved[i];
		if(!strncmp(id, entry->client_id, entry->len)
				&& (id[entry->len] == '\0' || id[entry->len] == '-')){
			return entry;
		}
	}
	return NULL;
}

/* ---- the set of connected clients ----------------------------------------------------------- */

static size_t slot_of(const struct client_set *set, const struct mosquitto *client)
{
	uintptr_t key = (uintptr_t)client;
	key ^= key >> 17;
	key *= (uintptr_t)0x9E3779B97F4A7C15ULL;
	return (size_t)(key ^ (key >> 29)) & (set->capacity - 1);
}

static bool set_grow(struct client_set *set)
{
	size_t capacity = set->capacity ? set->capacity : 64;
	while(set->live * 2 >= capacity) capacity *= 2;
	const struct mosquitto **old = set->slots;
	size_t old_capacity = set->capacity;
	const struct mosquitto **slots = calloc(capacity, sizeof(*slots));
	if(!slots) return false;
	set->slots = slots;
	set->capacity = capacity;
	set->used = 0;
	set->live = 0;
	for(size_t i = 0; i < old_capacity; i++){
		if(old[i] != SLOT_FREE && old[i] != SLOT_GONE){
			size_t at = slot_of(set, old[i]);
			while(set->slots[at] != SLOT_FREE) at = (at + 1) & (capacity - 1);
			set->slots[at] = old[i];
			set->used++;
			set->live++;
		}
	}
	free(old);
	return true;
}

static bool set_has(const struct client_set *set, const struct mosquitto *client)
{
	if(!set->capacity) return false;
	for(size_t at = slot_of(set, client), n = 0; n < set->capacity; at = (at + 1) & (set->capacity - 1), n++){
		if(set->slots[at] == SLOT_FREE) return false;
		if(set->slots[at] == client) return true;
	}
	return false;
}

static bool set_add(struct client_set *set, const struct mosquitto *client)
{
	if(set_has(set, client)) return true;
	if((set->used + 1) * 4 > set->capacity * 3 && !set_grow(set)) return false;
	size_t at = slot_of(set, client);
	while(set->slots[at] != SLOT_FREE && set->slots[at] != SLOT_GONE){
		at = (at + 1) & (set->capacity - 1);
	}
	if(set->slots[at] == SLOT_FREE) set->used++;
	set->slots[at] = client;
	set->live++;
	return true;
}

static void set_remove(struct client_set *set, const struct mosquitto *client)
{
	if(!set->capacity) return;
	for(size_t at = slot_of(set, client), n = 0; n < set->capacity; at = (at + 1) & (set->capacity - 1), n++){
		if(set->slots[at] == SLOT_FREE) return;
		if(set->slots[at] == client){
			set->slots[at] = SLOT_GONE;
			set->live--;
			return;
		}
	}
}

/* ---- events ------------------------------------------------------------------------------ */

static const char *or_unknown(const char *text)
{
	return text ? text : "?";
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	struct guard *guard = userdata;
	const char *id = mosquitto_client_id(ed->client);
	const char *user = mosquitto_client_username(ed->client);
	const struct reservation *reserved = reservation_of(&guard->rules, id);
	(void)event;

	if(reserved && !(user && listed(reserved->users, reserved->user_count, user))){
		mosquitto_log_printf(MOSQ_LOG_NOTICE,
				"%s: refused client id '%s' from %s (user %s): the id is reserved for another user",
				GUARD, id, or_unknown(mosquitto_client_address(ed->client)), user ? user : "anonymous");
		return MOSQ_ERR_AUTH;
	}
	if(!user && !mosquitto_client_clean_session(ed->client)){
		mosquitto_log_printf(MOSQ_LOG_NOTICE,
				"%s: refused anonymous client '%s' from %s: anonymous clients must use clean start",
				GUARD, or_unknown(id), or_unknown(mosquitto_client_address(ed->client)));
		return MOSQ_ERR_AUTH;
	}
	if(!set_add(&guard->online, ed->client) && !guard->untracked){
		guard->untracked = true;
		mosquitto_log_printf(MOSQ_LOG_ERR, "%s: out of memory: offline queues are no longer limited", GUARD);
	}
	return MOSQ_ERR_PLUGIN_DEFER; /* the password file decides on the credentials */
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	struct guard *guard = userdata;
	const char *user;
	(void)event;

	if(ed->access != MOSQ_ACL_READ || guard->untracked || set_has(&guard->online, ed->client)){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	user = mosquitto_client_username(ed->client);
	if(user && listed(guard->rules.queue_users, guard->rules.queue_count, user)){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	return MOSQ_ERR_ACL_DENIED; /* offline, and not one whose queue is kept */
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	struct guard *guard = userdata;
	(void)event;

	set_remove(&guard->online, ed->client);
	return MOSQ_ERR_SUCCESS;
}

static int on_reload(int event, void *event_data, void *userdata)
{
	struct guard *guard = userdata;
	struct rules rules;
	(void)event;
	(void)event_data;

	if(rules_read(guard->rules_file, &rules)){
		rules_free(&guard->rules);
		guard->rules = rules;
	}else{
		mosquitto_log_printf(MOSQ_LOG_ERR, "%s: keeping the rules read before", GUARD);
	}
	return MOSQ_ERR_PLUGIN_DEFER; /* let the broker's own reload go on */
}

/* ---- plugin interface -------------------------------------------------------------------- */

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

static void guard_free(struct guard *guard)
{
	if(!guard) return;
	rules_free(&guard->rules);
	free(guard->online.slots);
	free(guard->rules_file);
	free(guard);
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	struct guard *guard = calloc(1, sizeof(*guard));
	if(!guard) return MOSQ_ERR_NOMEM;
	guard->identifier = identifier;

	for(int i = 0; i < option_count; i++){
		if(!strcmp(options[i].key, "rules_file")){
			free(guard->rules_file);
			guard->rules_file = copy_string(options[i].value);
			if(!guard->rules_file){
				guard_free(guard);
				return MOSQ_ERR_NOMEM;
			}
		}else{
			mosquitto_log_printf(MOSQ_LOG_ERR, "%s: unknown option plugin_opt_%s", GUARD, options[i].key);
			guard_free(guard);
			return MOSQ_ERR_INVAL;
		}
	}
	if(!guard->rules_file){
		mosquitto_log_printf(MOSQ_LOG_ERR, "%s: plugin_opt_rules_file is missing", GUARD);
		guard_free(guard);
		return MOSQ_ERR_INVAL;
	}
	if(!rules_read(guard->rules_file, &guard->rules)){
		guard_free(guard);
		return MOSQ_ERR_INVAL;
	}
	if(mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, guard)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, guard)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, guard)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_RELOAD, on_reload, NULL, guard)){
		mosquitto_log_printf(MOSQ_LOG_ERR, "%s: cannot register its callbacks", GUARD);
		mosquitto_plugin_cleanup(guard, options, option_count);
		return MOSQ_ERR_UNKNOWN;
	}
	mosquitto_log_printf(MOSQ_LOG_INFO, "%s: %d reserved client id(s), %d queue user(s) from %s",
			GUARD, guard->rules.reserved_count, guard->rules.queue_count, guard->rules_file);
	*userdata = guard;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	struct guard *guard = userdata;
	(void)options;
	(void)option_count;

	if(!guard) return MOSQ_ERR_SUCCESS;
	mosquitto_callback_unregister(guard->identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(guard->identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(guard->identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	mosquitto_callback_unregister(guard->identifier, MOSQ_EVT_RELOAD, on_reload, NULL);
	guard_free(guard);
	return MOSQ_ERR_SUCCESS;
}
