//! The two languages of khoa's pages: Vietnamese and English. The language is chosen by
//! `ui_locales` (OIDC Core §3.1.2.1), then `Accept-Language`, then Vietnamese.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    Vi,
    En,
}

impl Locale {
    pub fn tag(self) -> &'static str {
        match self {
            Self::Vi => "vi",
            Self::En => "en",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        match primary.as_str() {
            "vi" => Some(Self::Vi),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    /// The first supported of `ui_locales`, else the best `Accept-Language` entry by
    /// quality, else Vietnamese.
    pub fn negotiate(ui_locales: &[String], accept_language: Option<&str>) -> Self {
        if let Some(l) = ui_locales.iter().find_map(|t| Self::from_tag(t)) {
            return l;
        }
        let mut best: Option<(f32, Self)> = None;
        for part in accept_language.unwrap_or("").split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("");
            let q = pieces.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
            if let Some(l) = Self::from_tag(tag) {
                if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, l));
                }
            }
        }
        best.map(|(_, l)| l).unwrap_or(Self::Vi)
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Self::Vi => &VI,
            Self::En => &EN,
        }
    }

    /// A plain-words description of a scope.
    pub fn scope_description(self, scope: &str) -> String {
        let known = match (self, scope) {
            (Self::Vi, "openid") => "Xác nhận danh tính của bạn",
            (Self::Vi, "profile") => "Họ tên, ảnh đại diện và tên đăng nhập",
            (Self::Vi, "email") => "Địa chỉ email",
            (Self::Vi, "phone") => "Số điện thoại",
            (Self::Vi, "offline_access") => "Duy trì truy cập khi bạn không trực tuyến",
            (Self::En, "openid") => "Confirm who you are",
            (Self::En, "profile") => "Your name, picture and username",
            (Self::En, "email") => "Your email address",
            (Self::En, "phone") => "Your phone number",
            (Self::En, "offline_access") => "Keep access while you are away",
            (Self::Vi, other) => return format!("Quyền “{other}”"),
            (Self::En, other) => return format!("The “{other}” permission"),
        };
        known.to_string()
    }
}

pub struct Texts {
    pub login_title: &'static str,
    pub login_intro: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub sign_in: &'static str,
    pub bad_credentials: &'static str,
    pub throttled: &'static str,
    /// The password was right, but the account is disabled.
    pub disabled: &'static str,
    pub consent_title: &'static str,
    pub consent_intro: &'static str,
    pub allow: &'static str,
    pub deny: &'static str,
    pub error_title: &'static str,
    pub error_intro: &'static str,
    pub expired: &'static str,
    pub other_language: &'static str,
    pub logout_title: &'static str,
    pub logout_question: &'static str,
    pub logout_confirm: &'static str,
    pub logged_out_title: &'static str,
    pub logged_out_text: &'static str,
    pub logout_continue: &'static str,
    pub logout_invalid: &'static str,
    pub form_post_title: &'static str,
    pub form_post_text: &'static str,
    pub form_post_continue: &'static str,
}

static VI: Texts = Texts {
    login_title: "Đăng nhập",
    login_intro: "Đăng nhập để tiếp tục tới",
    username: "Tên đăng nhập",
    password: "Mật khẩu",
    sign_in: "Đăng nhập",
    bad_credentials: "Tên đăng nhập hoặc mật khẩu không đúng.",
    throttled: "Bạn đã thử quá nhiều lần. Vui lòng đợi rồi thử lại.",
    disabled: "Tài khoản này đã bị khóa. Vui lòng liên hệ quản trị viên.",
    consent_title: "Cấp quyền truy cập",
    consent_intro: "muốn truy cập tài khoản của bạn:",
    allow: "Cho phép",
    deny: "Từ chối",
    error_title: "Không thể tiếp tục",
    error_intro: "Yêu cầu đăng nhập này không hợp lệ:",
    expired: "Phiên đăng nhập này đã hết hạn. Vui lòng quay lại ứng dụng và thử lại.",
    other_language: "English",
    logout_title: "Đăng xuất",
    logout_question: "Bạn có muốn đăng xuất khỏi tất cả ứng dụng đang dùng tài khoản này?",
    logout_confirm: "Đăng xuất",
    logged_out_title: "Đã đăng xuất",
    logged_out_text: "Bạn đã đăng xuất.",
    logout_continue: "Tiếp tục",
    logout_invalid:
        "Yêu cầu đăng xuất không hợp lệ: id_token_hint, client_id hoặc post_logout_redirect_uri không đúng.",
    form_post_title: "Đang chuyển về ứng dụng",
    form_post_text: "Trình duyệt của bạn không chạy JavaScript. Nhấn nút để quay về ứng dụng.",
    form_post_continue: "Tiếp tục",
};

static EN: Texts = Texts {
    login_title: "Sign in",
    login_intro: "Sign in to continue to",
    username: "Username",
    password: "Password",
    sign_in: "Sign in",
    bad_credentials: "Incorrect username or password.",
    throttled: "Too many attempts. Please wait and try again.",
    disabled: "This account is disabled. Please contact your administrator.",
    consent_title: "Allow access",
    consent_intro: "wants to access your account:",
    allow: "Allow",
    deny: "Deny",
    error_title: "Cannot continue",
    error_intro: "This sign-in request is not valid:",
    expired: "This sign-in has expired. Please go back to the application and try again.",
    other_language: "Tiếng Việt",
    logout_title: "Sign out",
    logout_question: "Do you want to sign out of every application using this account?",
    logout_confirm: "Sign out",
    logged_out_title: "Signed out",
    logged_out_text: "You have been signed out.",
    logout_continue: "Continue",
    logout_invalid:
        "This sign-out request is not valid: the id_token_hint, client_id or post_logout_redirect_uri is wrong.",
    form_post_title: "Returning to the application",
    form_post_text: "Your browser does not run JavaScript. Press the button to return to the application.",
    form_post_continue: "Continue",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_order() {
        assert_eq!(Locale::negotiate(&["en".into()], Some("vi")), Locale::En);
        assert_eq!(Locale::negotiate(&["fr".into(), "vi-VN".into()], Some("en")), Locale::Vi);
        assert_eq!(Locale::negotiate(&[], Some("en-US,en;q=0.9,vi;q=0.8")), Locale::En);
        assert_eq!(Locale::negotiate(&[], Some("fr, vi;q=0.5, en;q=0.4")), Locale::Vi);
        assert_eq!(Locale::negotiate(&[], Some("en;q=0")), Locale::Vi);
        assert_eq!(Locale::negotiate(&[], Some("garbage;;;q=x")), Locale::Vi);
        assert_eq!(Locale::negotiate(&[], None), Locale::Vi);
    }
}
