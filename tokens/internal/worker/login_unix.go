//go:build cgo && unix

package worker

/*
#cgo linux LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

typedef unsigned long smimed_ck_ulong;

// The head of CK_FUNCTION_LIST (PKCS #11 2.40 and 3.0, same layout on
// Unix: a CK_VERSION of two bytes, then function pointers in the order the
// standard lists them). C_Login is the 19th function.
struct smimed_ck_function_list_head {
	unsigned char major, minor;
	void *functions[19];
};

typedef smimed_ck_ulong (*smimed_ck_get_function_list)(void **list);
typedef smimed_ck_ulong (*smimed_ck_login)(smimed_ck_ulong session,
	smimed_ck_ulong user_type, unsigned char *pin, smimed_ck_ulong pin_len);

static void *smimed_dlopen(const char *path, const char **err) {
	void *h = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
	if (h == NULL) {
		*err = dlerror();
	}
	return h;
}

static void *smimed_function_list(void *handle, smimed_ck_ulong *rv) {
	void *list = NULL;
	smimed_ck_get_function_list get =
		(smimed_ck_get_function_list)dlsym(handle, "C_GetFunctionList");
	if (get == NULL) {
		*rv = (smimed_ck_ulong)-1;
		return NULL;
	}
	*rv = get(&list);
	return list;
}

static int smimed_list_major(void *list) {
	return ((struct smimed_ck_function_list_head *)list)->major;
}

static smimed_ck_ulong smimed_login(void *list, smimed_ck_ulong session,
		smimed_ck_ulong user_type, unsigned char *pin, smimed_ck_ulong pin_len) {
	smimed_ck_login login =
		(smimed_ck_login)((struct smimed_ck_function_list_head *)list)->functions[18];
	return login(session, user_type, pin_len ? pin : NULL, pin_len);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// library is the module loaded a second time by this package (dlopen
// returns the same handle the PKCS#11 library got), so that C_Login can be
// called with a PIN buffer this package owns and zeroes: the library's own
// Login copies the PIN into C memory it frees without wiping.
type library struct {
	handle unsafe.Pointer
	list   unsafe.Pointer
}

// openLibrary dlopens path and reports dlerror's text on failure.
func openLibrary(path string) (*library, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var cerr *C.char
	h := C.smimed_dlopen(cpath, &cerr)
	if h == nil {
		msg := "dlopen failed"
		if cerr != nil {
			msg = C.GoString(cerr)
		}
		return nil, errors.New(msg)
	}
	return &library{handle: h}, nil
}

// bind fetches the module's function list; call it after the PKCS#11
// library loaded the module.
func (l *library) bind() error {
	var rv C.smimed_ck_ulong
	list := C.smimed_function_list(l.handle, &rv)
	if list == nil {
		if rv == ^C.smimed_ck_ulong(0) {
			return errors.New("the module has no C_GetFunctionList")
		}
		return fmt.Errorf("C_GetFunctionList: %w", pkcs11.Error(rv))
	}
	if rv != 0 {
		return fmt.Errorf("C_GetFunctionList: %w", pkcs11.Error(rv))
	}
	if major := C.smimed_list_major(list); major != 2 && major != 3 {
		return fmt.Errorf("C_GetFunctionList: unknown interface version %d", major)
	}
	l.list = list
	return nil
}

// login calls C_Login with pin (nil for a protected authentication path)
// straight from Go memory: no copy is made.
func (l *library) login(session pkcs11.SessionHandle, userType uint, pin []byte) error {
	var p *C.uchar
	if len(pin) > 0 {
		p = (*C.uchar)(unsafe.Pointer(&pin[0]))
	}
	rv := C.smimed_login(l.list, C.smimed_ck_ulong(session), C.smimed_ck_ulong(userType), p, C.smimed_ck_ulong(len(pin)))
	if rv != 0 {
		return pkcs11.Error(rv)
	}
	return nil
}
