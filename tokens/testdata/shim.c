/*
 * A PKCS#11 module for smimed's tests. It forwards every call to a real
 * module (SoftHSM2, or SMIMED_SHIM_TARGET) and misbehaves as the environment
 * asks, to stand in for hardware the tests cannot have:
 *
 *   SMIMED_SHIM_HANG=init|slots|sign   never return from C_Initialize,
 *                                      C_GetSlotList or C_Sign
 *   SMIMED_SHIM_CRASH=sign             abort() in C_Sign
 *   SMIMED_SHIM_PINPAD=<pin>|cancel    report a protected authentication
 *                                      path; C_Login with a NULL PIN logs in
 *                                      with <pin> ("typed on the reader") or
 *                                      fails with CKR_FUNCTION_CANCELED
 *   SMIMED_SHIM_TRIES=<n>              a PIN retry counter of n tries kept in
 *   SMIMED_SHIM_STATE=<file>           <file>: token flags COUNT_LOW,
 *                                      FINAL_TRY and LOCKED as a card sets
 *                                      them, CKR_PIN_LOCKED once locked
 *   SMIMED_SHIM_HIDE=<mechanism>       hide a mechanism (decimal or 0x hex)
 *   SMIMED_SHIM_NOLOGIN=<pin>          report a token that needs no login
 *                                      (no CKF_LOGIN_REQUIRED): every new
 *                                      session is logged in with <pin> behind
 *                                      the caller's back, so keys are usable
 *   SMIMED_SHIM_LOG=<file>             append "login <user type> <rv>" for
 *                                      every C_Login
 *
 * Built by the tests with: gcc -shared -fPIC -I<miekg/pkcs11 dir> shim.c -ldl
 */
#define CK_PTR *
#define NULL_PTR 0
#define CK_DEFINE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION_POINTER(returnType, name) returnType (*name)
#define CK_CALLBACK_FUNCTION(returnType, name) returnType (*name)
#include "pkcs11.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static CK_FUNCTION_LIST shim;
static CK_FUNCTION_LIST_PTR real;

static int is(const char *var, const char *value) {
	const char *v = getenv(var);
	return v != NULL && strcmp(v, value) == 0;
}

static void hang(void) {
	for (;;)
		pause();
}

static long tries_max(void) {
	const char *v = getenv("SMIMED_SHIM_TRIES");
	return v ? strtol(v, NULL, 10) : 0;
}

static long failures(void) {
	const char *path = getenv("SMIMED_SHIM_STATE");
	long n = 0;
	FILE *f;
	if (path == NULL || (f = fopen(path, "r")) == NULL)
		return 0;
	if (fscanf(f, "%ld", &n) != 1)
		n = 0;
	fclose(f);
	return n;
}

static void set_failures(long n) {
	const char *path = getenv("SMIMED_SHIM_STATE");
	FILE *f;
	if (path == NULL || (f = fopen(path, "w")) == NULL)
		return;
	fprintf(f, "%ld\n", n);
	fclose(f);
}

static void log_login(CK_USER_TYPE user, CK_RV rv) {
	const char *path = getenv("SMIMED_SHIM_LOG");
	FILE *f;
	if (path == NULL || (f = fopen(path, "a")) == NULL)
		return;
	fprintf(f, "login %lu %lu\n", (unsigned long)user, (unsigned long)rv);
	fclose(f);
}

static CK_MECHANISM_TYPE hidden(void) {
	const char *v = getenv("SMIMED_SHIM_HIDE");
	return v ? (CK_MECHANISM_TYPE)strtoul(v, NULL, 0) : (CK_MECHANISM_TYPE)-1;
}

static CK_RV shim_Initialize(CK_VOID_PTR args) {
	if (is("SMIMED_SHIM_HANG", "init"))
		hang();
	return real->C_Initialize(args);
}

static CK_RV shim_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
	if (is("SMIMED_SHIM_HANG", "slots"))
		hang();
	return real->C_GetSlotList(present, list, count);
}

static CK_RV shim_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
	CK_RV rv = real->C_GetTokenInfo(slot, info);
	long max = tries_max();
	if (rv != CKR_OK)
		return rv;
	if (getenv("SMIMED_SHIM_PINPAD"))
		info->flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
	if (getenv("SMIMED_SHIM_NOLOGIN"))
		info->flags &= ~CKF_LOGIN_REQUIRED;
	if (max > 0) {
		long n = failures();
		info->flags &= ~(CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED);
		if (n > 0)
			info->flags |= CKF_USER_PIN_COUNT_LOW;
		if (n == max - 1)
			info->flags |= CKF_USER_PIN_FINAL_TRY;
		if (n >= max)
			info->flags |= CKF_USER_PIN_LOCKED;
	}
	return CKR_OK;
}

static CK_RV shim_Login(CK_SESSION_HANDLE s, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
	const char *pad = getenv("SMIMED_SHIM_PINPAD");
	long max = tries_max();
	CK_RV rv;
	if (pad != NULL) {
		if (pin != NULL) {
			log_login(user, CKR_ARGUMENTS_BAD);
			return CKR_ARGUMENTS_BAD; /* a PIN-pad reader takes no PIN from the host */
		}
		if (strcmp(pad, "cancel") == 0) {
			log_login(user, CKR_FUNCTION_CANCELED);
			return CKR_FUNCTION_CANCELED;
		}
		pin = (CK_UTF8CHAR_PTR)pad;
		len = strlen(pad);
	}
	if (max > 0 && failures() >= max) {
		log_login(user, CKR_PIN_LOCKED);
		return CKR_PIN_LOCKED;
	}
	rv = real->C_Login(s, user, pin, len);
	log_login(user, rv);
	if (max > 0) {
		if (rv == CKR_PIN_INCORRECT)
			set_failures(failures() + 1);
		else if (rv == CKR_OK)
			set_failures(0);
	}
	return rv;
}

static CK_RV shim_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR s) {
	const char *pin = getenv("SMIMED_SHIM_NOLOGIN");
	CK_RV rv = real->C_OpenSession(slot, flags, app, notify, s);
	if (rv == CKR_OK && pin != NULL)
		real->C_Login(*s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)); /* or already logged in */
	return rv;
}

static CK_RV shim_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count) {
	CK_ULONG i, j, n;
	CK_RV rv = real->C_GetMechanismList(slot, list, count);
	if (rv != CKR_OK || list == NULL)
		return rv; /* a size query may overstate by one: allowed */
	n = *count;
	for (i = 0, j = 0; i < n; i++)
		if (list[i] != hidden())
			list[j++] = list[i];
	*count = j;
	return rv;
}

static CK_RV shim_SignInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {
	if (m != NULL && m->mechanism == hidden())
		return CKR_MECHANISM_INVALID;
	return real->C_SignInit(s, m, k);
}

static CK_RV shim_Sign(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR siglen) {
	if (is("SMIMED_SHIM_HANG", "sign"))
		hang();
	if (is("SMIMED_SHIM_CRASH", "sign"))
		abort();
	return real->C_Sign(s, data, len, sig, siglen);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out) {
	const char *target = getenv("SMIMED_SHIM_TARGET");
	void *h;
	CK_C_GetFunctionList get;
	if (out == NULL)
		return CKR_ARGUMENTS_BAD;
	if (real == NULL) {
		h = dlopen(target ? target : "/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW | RTLD_LOCAL);
		if (h == NULL)
			return CKR_GENERAL_ERROR;
		get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
		if (get == NULL || get(&real) != CKR_OK)
			return CKR_GENERAL_ERROR;
		shim = *real;
		shim.C_Initialize = shim_Initialize;
		shim.C_GetSlotList = shim_GetSlotList;
		shim.C_GetTokenInfo = shim_GetTokenInfo;
		shim.C_Login = shim_Login;
		shim.C_OpenSession = shim_OpenSession;
		shim.C_GetMechanismList = shim_GetMechanismList;
		shim.C_SignInit = shim_SignInit;
		shim.C_Sign = shim_Sign;
		shim.C_GetFunctionList = C_GetFunctionList;
	}
	*out = &shim;
	return CKR_OK;
}
